"""Bare FastAPI: the small JSON endpoint with no middleware, the 1.0x of the HTTP benchmark."""

from __future__ import annotations

from fastapi import FastAPI

app = FastAPI()


@app.get("/item")
async def item() -> dict[str, object]:
    return {"id": 42, "name": "widget", "price": 9.99, "tags": ["a", "b"]}
