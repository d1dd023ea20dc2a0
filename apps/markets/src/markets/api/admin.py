"""Operator API: start imports of a range of days and follow their progress."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, HTTPException
from sqlalchemy import select

from mainspring import use
from mainspring.health import AdminRoute
from mainspring.observability import ErrorBody
from mainspring.resources import DbSession
from markets.api.errors import not_found
from markets.api.params import RowId
from markets.api.schemas import ImportAccepted, ImportOut, ImportRequest
from markets.db.models import ImportRun, ImportState, League
from markets.importer import Importer, ImportQueueFull

QUEUE_FULL_RETRY_AFTER = 10
"""Seconds a client is told to wait when the import queue is full."""

# The admin check runs before a body is read: an unauthenticated client cannot make the
# server read or parse one.
router = APIRouter(prefix="/admin", tags=["admin"], route_class=AdminRoute)


@router.post(
    "/imports",
    status_code=202,
    response_model=ImportAccepted,
    summary="Import a league's games for a range of days, in the background",
    responses={
        429: {"model": ErrorBody, "description": "Too many imports are waiting; retry later."},
        503: {
            "model": ErrorBody,
            "description": "The importer is not running here, or the database is busy.",
        },
    },
)
async def start_import(
    body: ImportRequest, importer: Annotated[Importer, Depends(use(Importer))]
) -> ImportAccepted:
    try:
        run_id = await importer.enqueue(body.league, body.start, body.end, requested_by="admin")
    except ImportQueueFull as exc:
        raise HTTPException(
            429, str(exc), headers={"Retry-After": str(QUEUE_FULL_RETRY_AFTER)}
        ) from None
    return ImportAccepted(
        id=run_id, state=ImportState.QUEUED, status_url=f"/admin/imports/{run_id}"
    )


@router.get(
    "/imports/{import_id}",
    response_model=ImportOut,
    summary="Progress of an import: days done, games seen, markets opened, errors per day",
    responses=not_found("import"),
)
async def get_import(import_id: RowId, session: DbSession) -> ImportOut:
    found = (
        await session.execute(
            select(ImportRun, League.code)
            .join(League, League.id == ImportRun.league_id)
            .where(ImportRun.id == import_id)
        )
    ).first()
    if found is None:
        raise HTTPException(404, f"import {import_id} not found")
    run, league = found
    return ImportOut.of(run, league)
