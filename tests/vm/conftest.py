"""The suites under tests/vm/ run only under ``python -m tests.vm.vm_test`` (over SSH).

Without the run's context, testinfra's ``host`` would be this machine: the suites are then not
collected at all (a plain ``pytest`` over tests/ skips the directory silently).
"""

from __future__ import annotations

import os

collect_ignore_glob = [] if os.environ.get("VMTEST_CONTEXT") else ["test_*.py"]
