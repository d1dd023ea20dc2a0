"""OpenAPI that lists the errors each route really answers, so clients and contract tests
(schemathesis) can trust it.

FastAPI declares 200 and 422. An operation with a body can also answer 400 (not JSON) and
413 (over the body limit); a dependency names what it may answer with `declares_errors`
(`admin_only`: 401 and 403, `DbSession`: 503...), and every route that uses it, however
deep, lists those answers too, in the `ErrorBody` shape; so does a route class
(`AdminRoute`). What a route declares itself is left as it is.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from typing import Any, TypeVar

from fastapi import FastAPI
from fastapi.dependencies.models import Dependant
from fastapi.routing import APIRoute, iter_route_contexts

from mainspring.observability.errors import ErrorBody

_ERRORS_ATTRIBUTE = "__mainspring_errors__"
_ERROR_CONTENT = {
    "application/json": {"schema": {"$ref": f"#/components/schemas/{ErrorBody.__name__}"}}
}
BODY_ERRORS = {
    400: "The body could not be read as JSON.",
    413: "The body is larger than this route accepts.",
}

DeclarerT = TypeVar("DeclarerT", bound=Callable[..., object])


def declares_errors(declarer: DeclarerT, errors: Mapping[int, str]) -> DeclarerT:
    """Mark a dependency (or a route class) as answering these statuses (status ->
    description); returns it."""
    setattr(declarer, _ERRORS_ATTRIBUTE, {**getattr(declarer, _ERRORS_ATTRIBUTE, {}), **errors})
    return declarer


def declare_error_responses(app: FastAPI) -> None:
    """Add the errors each operation can answer to `app`'s OpenAPI document whenever
    FastAPI builds it (again when routes were added, such as the runtime's)."""
    build = app.openapi
    completed: dict[str, Any] | None = None

    def openapi() -> dict[str, Any]:
        nonlocal completed
        schema = build()
        if schema is not completed:
            _complete(app, schema)
            completed = schema
        return schema

    app.openapi = openapi  # type: ignore[method-assign]  # FastAPI's documented hook


def _complete(app: FastAPI, schema: dict[str, Any]) -> None:
    paths: dict[str, dict[str, Any]] = schema.get("paths", {})
    for context in iter_route_contexts(app.routes):
        if not isinstance(context.original_route, APIRoute):
            continue
        errors = {**getattr(context.original_route, _ERRORS_ATTRIBUTE, {})}
        for dependant in _dependants(context.dependant):
            errors.update(getattr(dependant.call, _ERRORS_ATTRIBUTE, {}))
        for method in context.methods or ():
            operation = paths.get(context.path_format or "", {}).get(method.lower())
            if operation is None:  # not in the schema
                continue
            body_errors = BODY_ERRORS if "requestBody" in operation else {}
            for status, description in {**body_errors, **errors}.items():
                operation["responses"].setdefault(
                    str(status), {"description": description, "content": _ERROR_CONTENT}
                )
    schemas = schema.setdefault("components", {}).setdefault("schemas", {})
    schemas.setdefault(ErrorBody.__name__, ErrorBody.model_json_schema())


def _dependants(dependant: Dependant) -> Iterator[Dependant]:
    for sub in dependant.dependencies:
        yield sub
        yield from _dependants(sub)
