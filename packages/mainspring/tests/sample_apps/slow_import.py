"""An app whose import takes as long as the test wants: it writes `importing` into
SLOW_IMPORT_MARKERS, then waits there for a `go` file (a large app, a slow disk)."""

from __future__ import annotations

import os
import time
from pathlib import Path

from fastapi import FastAPI

IMPORT_DEADLINE = 60.0

markers = Path(os.environ["SLOW_IMPORT_MARKERS"])
(markers / "importing").touch()
waited_until = time.monotonic() + IMPORT_DEADLINE
while not (markers / "go").exists() and time.monotonic() < waited_until:
    time.sleep(0.02)

app = FastAPI()


@app.get("/ping")
async def ping() -> dict[str, int]:
    return {"pid": os.getpid()}
