"""Opaque page cursors: clients pass back what they were given and never build one."""

from __future__ import annotations

import base64
import binascii

PREFIX = "after:"


def encode_cursor(last_id: int) -> str:
    return base64.urlsafe_b64encode(f"{PREFIX}{last_id}".encode()).decode().rstrip("=")


def decode_cursor(cursor: str) -> int:
    """The id the page ends after; ValueError when `cursor` is not one of ours."""
    try:
        text = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)).decode()
    except (binascii.Error, UnicodeDecodeError):
        raise ValueError("not a cursor") from None
    if not text.startswith(PREFIX) or not text[len(PREFIX) :].isdigit():
        raise ValueError("not a cursor")
    return int(text[len(PREFIX) :])
