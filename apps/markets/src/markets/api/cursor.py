"""Opaque page cursors: clients pass back what they were given and never build one."""

from __future__ import annotations

import base64
import binascii

from markets.api.params import MAX_ROW_ID

PREFIX = "after:"
MAX_CURSOR_LENGTH = 64
"""Far more than any cursor given out; longer input is refused before it is decoded."""


def encode_cursor(last_id: int) -> str:
    return base64.urlsafe_b64encode(f"{PREFIX}{last_id}".encode()).decode().rstrip("=")


def decode_cursor(cursor: str) -> int:
    """The id the page ends after; ValueError when `cursor` is not one of ours, including
    one naming an id no row can have."""
    if len(cursor) > MAX_CURSOR_LENGTH:
        raise ValueError("not a cursor")
    try:
        text = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)).decode("ascii")
    except (binascii.Error, UnicodeDecodeError, ValueError):
        raise ValueError("not a cursor") from None
    digits = text.removeprefix(PREFIX)
    if digits == text or not digits.isdecimal() or int(digits) > MAX_ROW_ID:
        raise ValueError("not a cursor")
    return int(digits)
