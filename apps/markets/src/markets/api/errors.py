"""The error responses the routes document, and 422s in the same shape as FastAPI's own."""

from __future__ import annotations

from typing import Any

from fastapi.exceptions import RequestValidationError

from mainspring.observability import ErrorBody


def not_found(what: str) -> dict[int | str, dict[str, Any]]:
    return {404: {"model": ErrorBody, "description": f"No {what} has this id."}}


def invalid(where: str, name: str, message: str, value: object) -> RequestValidationError:
    """A 422 for a parameter that parsed but makes no sense, e.g. an unknown league."""
    return RequestValidationError(
        [{"type": "value_error", "loc": (where, name), "msg": message, "input": value}]
    )
