"""Running an app: bind the port safely, serve with uvicorn or gunicorn, drain on SIGTERM."""

from mainspring.server.exitcodes import StartError
from mainspring.server.options import RunOptions
from mainspring.server.runner import run

__all__ = ["RunOptions", "StartError", "run"]
