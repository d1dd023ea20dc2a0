"""Where mainspring keeps lock files and pidfiles when nobody says otherwise.

Not straight in the shared temporary directory: another local user could plant a
symlink or a forged pidfile there. Everything goes under one directory per user,
mode 0700, that must be a real directory owned by this user.
"""

from __future__ import annotations

import os
import stat
import tempfile
from pathlib import Path


def private_dir(*parts: str) -> Path:
    """``$TMPDIR/mainspring-<uid>/<parts...>``, created when missing, refused when unsafe."""
    base = Path(tempfile.gettempdir()) / f"mainspring-{os.getuid()}"
    base.mkdir(mode=0o700, exist_ok=True)
    info = os.lstat(base)
    if (
        not stat.S_ISDIR(info.st_mode)
        or info.st_uid != os.getuid()
        or info.st_mode & (stat.S_IRWXG | stat.S_IRWXO)
    ):
        raise RuntimeError(
            f"{base} is not a private directory of this user (owner, mode or symlink); "
            "remove it, or point MAINSPRING_LEASE_URL / MAINSPRING_PIDFILE_DIR elsewhere"
        )
    path = base.joinpath(*parts)
    path.mkdir(mode=0o700, parents=True, exist_ok=True)
    return path
