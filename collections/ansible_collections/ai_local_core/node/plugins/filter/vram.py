"""Filter ``ai_local_core.node.ollama_vram_plan``: the VRAM plan of the declared Ollama models.

Used by role ``ollama`` (tasks/models.yml, before any pull or preload) and by
``playbooks/status.yml`` (``make status``), with the GPU facts of module
``ai_local_core.node.gpu_facts``. The estimate lives in the package
(``ai_local_core.vram_plan``, standard library only, unit-tested in tests/unit/test_vram_plan.py);
this file only makes it importable from a controller where the package is not installed (a
plain checkout).
"""

from __future__ import annotations

import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any

try:
    from ai_local_core.vram_plan import role_plan
except ImportError:  # a checkout without the package installed: use its sources
    sys.path.insert(0, str(Path(__file__).resolve().parents[6] / "python_services"))
    from ai_local_core.vram_plan import role_plan


def _declared(models: Any) -> list[str]:
    """Model names: plain strings, or ``ollama_models`` entries (``{name, state}``, present)."""
    names: list[str] = []
    for model in models or []:
        if isinstance(model, Mapping):
            if str(model.get("state") or "present") == "present" and model.get("name"):
                names.append(str(model["name"]))
        else:
            names.append(str(model))
    return names


def gpu_memory_lines(gpu: Any) -> list[str]:
    """The MiB of each GPU in ``ansible_facts.ai_local_core_gpu`` (empty without a GPU)."""
    if not isinstance(gpu, Mapping) or not gpu.get("present"):
        return []
    return [
        str(g["memory_total_mib"])
        for g in gpu.get("gpus") or []
        if isinstance(g, Mapping) and g.get("memory_total_mib") is not None
    ]


def ollama_vram_plan(models: Any, gpu: Any = None, **kwargs: Any) -> dict[str, Any]:
    """``models | ai_local_core.node.ollama_vram_plan(gpu=ansible_facts.ai_local_core_gpu, ...)``.

    ``models``: declared names or ``ollama_models`` entries; ``gpu``: the gpu_facts fact (its
    GPUs' memory.total; ``smi_lines`` of nvidia-smi's memory.total still works); the other
    keywords are :func:`ai_local_core.vram_plan.role_plan`'s (``budget_gb`` above 0 wins).
    """
    if gpu is not None and "smi_lines" not in kwargs:
        kwargs["smi_lines"] = gpu_memory_lines(gpu)
    return role_plan(_declared(models), **kwargs)


class FilterModule:
    def filters(self) -> dict[str, Any]:
        return {"ollama_vram_plan": ollama_vram_plan}
