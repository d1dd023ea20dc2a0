"""Keep credentials out of log lines, wherever in an event they hide.

A key is sensitive when its name is one of `SENSITIVE_KEYS` or contains one of
`SENSITIVE_PARTS` (case-insensitive); its value becomes ``"[redacted]"``, in
nested dicts and in header lists of ``(name, value)`` pairs too. Free text is
scrubbed of ``Bearer <credential>``, ``password=...`` and ``password: ...`` pairs
and passwords in URLs (``redis://:secret@host`` included).
"""

from __future__ import annotations

import re
from collections.abc import Mapping, MutableMapping
from typing import Any

REDACTED = "[redacted]"

SENSITIVE_KEYS = frozenset(
    {
        "authorization",
        "proxy-authorization",
        "cookie",
        "set-cookie",
        "api_key",
        "api-key",
        "apikey",
        "x-api-key",
        "passwd",
    }
)
SENSITIVE_PARTS = (
    "token",
    "secret",
    "password",
    "private_key",
    "credential",
    "mnemonic",
    "keypair",
)

_FREE_TEXT = re.compile(
    r"(?P<scheme>\b(?:bearer|basic)\s+)[A-Za-z0-9._~+/=-]+"
    r"|(?P<param>\b[\w-]*(?:token|secret|password|passwd|api_?key)\"?\s*[=:]\s*\"?)[^&\s\"',}]+"
    r"|(?P<userinfo>://[^/\s:@]*:)[^/\s@]+(?=@)",
    re.IGNORECASE,
)


def is_sensitive(key: str | bytes) -> bool:
    name = (key.decode("latin-1") if isinstance(key, bytes) else key).lower()
    return name in SENSITIVE_KEYS or any(part in name for part in SENSITIVE_PARTS)


def scrub(text: str) -> str:
    """`text` with bearer credentials, secret query parameters and URL passwords replaced."""
    return _FREE_TEXT.sub(_replace, text)


def redact(value: Any) -> Any:
    """A copy of `value` with sensitive entries replaced; other objects pass through."""
    if isinstance(value, str):
        return scrub(value)
    if isinstance(value, Mapping):
        return {
            key: REDACTED if isinstance(key, str | bytes) and is_sensitive(key) else redact(item)
            for key, item in value.items()
        }
    if isinstance(value, list | tuple):
        if len(value) == 2 and isinstance(value[0], str | bytes):
            name, item = value
            pair = (name, REDACTED if is_sensitive(name) else redact(item))
            return list(pair) if isinstance(value, list) else pair
        items = [redact(item) for item in value]
        return items if isinstance(value, list) else tuple(items)
    return value


def redact_event(
    logger: Any, method_name: str, event_dict: MutableMapping[str, Any]
) -> MutableMapping[str, Any]:
    """structlog processor: `redact` every field of the event."""
    for key, value in event_dict.items():
        if key.startswith("_"):
            continue  # structlog's own bookkeeping, such as the stdlib `_record`
        event_dict[key] = REDACTED if is_sensitive(key) else redact(value)
    return event_dict


def _replace(match: re.Match[str]) -> str:
    prefix = match.group("scheme") or match.group("param") or match.group("userinfo")
    return prefix + REDACTED
