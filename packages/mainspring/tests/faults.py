"""How many times a fault loop repeats: a bounded count in CI, the full count under
`make test-faults` (MAINSPRING_FAULTS=full)."""

from __future__ import annotations

import os

FULL = os.environ.get("MAINSPRING_FAULTS") == "full"


def fault_count(ci: int, full: int) -> int:
    """`full` under `make test-faults`, `ci` otherwise."""
    return full if FULL else ci
