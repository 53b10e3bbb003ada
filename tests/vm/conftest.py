"""tests/vm/test_node.py runs only under ``python -m tests.vm.vm_test`` (against the VM over SSH).

Without the run's context, testinfra's ``host`` would be this machine: the suite is then not
collected at all (a plain ``pytest`` over tests/ skips the directory silently).
"""

from __future__ import annotations

import os

collect_ignore = [] if os.environ.get("VMTEST_CONTEXT") else ["test_node.py"]
