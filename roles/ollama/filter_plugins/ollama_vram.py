"""Ansible filter ``ollama_vram_plan`` of role ``ollama`` (tasks/models.yml).

The estimate lives in the package (``ai_local_core.vram_plan``, standard library
only, unit-tested in tests/unit/test_vram_plan.py); this file only makes it
importable from a controller where the package is not installed (a plain checkout).
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

try:
    from ai_local_core.vram_plan import role_plan
except ImportError:  # a checkout without the package installed: use its sources
    sys.path.insert(0, str(Path(__file__).resolve().parents[3] / "python_services"))
    from ai_local_core.vram_plan import role_plan


def ollama_vram_plan(models: Any, **kwargs: Any) -> dict[str, Any]:
    """``wanted | ollama_vram_plan(installed=..., smi_lines=..., budget_gb=..., ...)``."""
    return role_plan([str(m) for m in models or []], **kwargs)


class FilterModule:
    def filters(self) -> dict[str, Any]:
        return {"ollama_vram_plan": ollama_vram_plan}
