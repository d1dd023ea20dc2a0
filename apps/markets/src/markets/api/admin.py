"""Operator API: start imports of a range of days and follow their progress."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, HTTPException
from sqlalchemy import select

from mainspring import use
from mainspring.health import admin_only
from mainspring.resources import DbSession
from markets.api.errors import not_found
from markets.api.schemas import ErrorOut, ImportAccepted, ImportOut, ImportRequest
from markets.db.models import ImportRun, ImportState, League
from markets.importer import Importer, ImportQueueFull

router = APIRouter(
    prefix="/admin",
    tags=["admin"],
    dependencies=[Depends(admin_only)],
    responses={
        401: {"model": ErrorOut, "description": "Missing or wrong admin token."},
        403: {
            "model": ErrorOut,
            "description": "No admin token is set and the client is remote or behind a proxy.",
        },
    },
)


@router.post(
    "/imports",
    status_code=202,
    response_model=ImportAccepted,
    summary="Import a league's games for a range of days, in the background",
    responses={503: {"model": ErrorOut, "description": "Too many imports are waiting."}},
)
async def start_import(
    body: ImportRequest, importer: Annotated[Importer, Depends(use(Importer))]
) -> ImportAccepted:
    try:
        run_id = await importer.enqueue(body.league, body.start, body.end, requested_by="admin")
    except ImportQueueFull as exc:
        raise HTTPException(503, str(exc)) from None
    return ImportAccepted(
        id=run_id, state=ImportState.QUEUED, status_url=f"/admin/imports/{run_id}"
    )


@router.get(
    "/imports/{import_id}",
    response_model=ImportOut,
    summary="Progress of an import: days done, games seen, markets opened, errors per day",
    responses=not_found("import"),
)
async def get_import(import_id: int, session: DbSession) -> ImportOut:
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
