"""An app whose settings are invalid at import time."""

from fastapi import FastAPI

from mainspring.settings import MainspringSettings, load_settings

settings = load_settings(MainspringSettings, shutdown_timeout=-1)
app = FastAPI()
