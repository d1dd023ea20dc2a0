"""Parameter types whose every accepted value the database can store and compare, so an
extreme id or time is a 422 naming the parameter, never a 500 from the driver."""

from __future__ import annotations

import re
from datetime import UTC, datetime
from typing import Annotated

from fastapi import Path
from pydantic import AfterValidator, BeforeValidator, JsonValue
from pydantic_core import PydanticCustomError

from markets.espn.model import LEAGUES

MAX_ROW_ID = 2**31 - 1
"""Ids are INTEGER columns: 32 bits on PostgreSQL (SQLite would take 64)."""

LEAGUE_CHOICES: dict[str, JsonValue] = {"enum": [*sorted(LEAGUES)]}
"""The known league codes, listed in OpenAPI; other codes are a 422 that names them."""

RowId = Annotated[int, Path(ge=1, le=MAX_ROW_ID, description=f"A row id, from 1 to {MAX_ROW_ID}.")]


_ISO_DATE = re.compile(r"\d{4}-\d{2}-\d{2}")


def iso_text(value: object) -> object:
    """Only ISO 8601 text, as documented: pydantic alone would also take ``0.5`` as a Unix
    time, which OpenAPI's ``date-time`` does not allow."""
    if isinstance(value, str) and not _ISO_DATE.match(value):
        raise PydanticCustomError(
            "datetime_format", "expected an ISO 8601 datetime, such as 2024-01-09T00:30:00Z"
        )
    return value


def in_utc(moment: datetime) -> datetime:
    """`moment` in UTC (naive means UTC), as it is stored and compared on every database.

    A valid time can fall outside what UTC can hold (year 1 at +05:00, year 9999 at -23:59):
    that is a 422, not an overflow in the driver."""
    if moment.tzinfo is None:
        return moment.replace(tzinfo=UTC)
    try:
        return moment.astimezone(UTC)
    except OverflowError:
        raise PydanticCustomError(
            "datetime_out_of_range", "in UTC this time falls outside years 1 to 9999"
        ) from None


UtcQueryTime = Annotated[datetime, BeforeValidator(iso_text), AfterValidator(in_utc)]
"""A query time in ISO 8601, converted to UTC."""
