"""Import the app named by "module:attribute" before anything else, failing in one line."""

from __future__ import annotations

import importlib
import os
import sys
import traceback
from collections.abc import Callable

from mainspring.server.exitcodes import EXIT_APP_ERROR, StartError
from mainspring.settings import ConfigError


def load_app(target: str) -> Callable[..., object]:
    """Import `target`; a missing module or bad configuration becomes a one-line StartError."""
    module_name, _, attribute = target.partition(":")
    if not module_name or not attribute:
        raise StartError(f'app must look like "module:attribute", got {target!r}', EXIT_APP_ERROR)
    # Like uvicorn's --app-dir ".": the app lives next to where the command runs.
    if os.getcwd() not in sys.path:
        sys.path.insert(0, os.getcwd())
    try:
        module = importlib.import_module(module_name)
    except ConfigError as exc:
        raise StartError(f"{target}: {exc}", EXIT_APP_ERROR) from None
    except ImportError as exc:
        raise StartError(f"cannot import {module_name!r}: {exc}", EXIT_APP_ERROR) from None
    except Exception as exc:
        # A bug at import time: its traceback is what the developer needs.
        traceback.print_exc()
        raise StartError(
            f"importing {module_name!r} failed: {type(exc).__name__}: {exc}", EXIT_APP_ERROR
        ) from None
    app: object = module
    for name in attribute.split("."):
        try:
            app = getattr(app, name)
        except AttributeError:
            raise StartError(
                f"module {module_name!r} has no attribute {attribute!r}", EXIT_APP_ERROR
            ) from None
    if not callable(app):
        raise StartError(f"{target} is not an ASGI app (not callable)", EXIT_APP_ERROR)
    return app
