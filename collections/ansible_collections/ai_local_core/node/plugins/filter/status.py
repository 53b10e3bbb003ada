"""Filter ``ai_local_core.node.status_table`` for ``playbooks/status.yml`` (``make status``).

The parsing and layout live in the package (``ai_local_core.monitoring.status``,
standard library only, unit-tested); this file only makes it importable from a
controller where the package is not installed (a plain checkout).
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

try:
    from ai_local_core.monitoring.status import render_status
except ImportError:  # a checkout without the package installed: use its sources
    sys.path.insert(0, str(Path(__file__).resolve().parents[6] / "python_services"))
    from ai_local_core.monitoring.status import render_status


def status_table(raw: Any) -> str:
    return render_status(raw)


class FilterModule:
    def filters(self) -> dict[str, Any]:
        return {"status_table": status_table}
