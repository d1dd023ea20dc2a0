"""`markets --help` answers at once: it loads none of the app's heavy dependencies."""

from __future__ import annotations

import json
import subprocess
import sys

HEAVY = ("fastapi", "sqlalchemy", "alembic", "uvicorn", "mainspring", "rich")

PROBE = f"""
import json, sys
from markets.cli import main
sys.argv = ["markets", "--help"]
try:
    main()
except SystemExit:
    pass
loaded = sorted({{name.split(".")[0] for name in sys.modules}} & set({HEAVY!r}))
print(json.dumps(loaded), file=sys.stderr)
"""


def test_help_imports_nothing_heavy() -> None:
    probe = subprocess.run(
        [sys.executable, "-c", PROBE], capture_output=True, text=True, timeout=60, check=True
    )
    assert "replay-feed" in probe.stdout  # the help itself, in whatever format
    assert json.loads(probe.stderr.strip().splitlines()[-1]) == []
