"""What the current task is working for: a request id, or a service tick.

Log lines get it through structlog's contextvars; outbound calls through
`current_request_id()`; the loop watchdog, which looks at a task from outside,
through `activity_of(task)`.
"""

from __future__ import annotations

import asyncio
import contextvars
import functools
import itertools
import random
import uuid
from collections.abc import MutableMapping
from contextvars import ContextVar, Token
from typing import Any
from weakref import WeakKeyDictionary

import structlog
from structlog.contextvars import STRUCTLOG_KEY_PREFIX

request_id_var: ContextVar[str | None] = ContextVar("mainspring_request_id", default=None)

_bound: dict[asyncio.Task[Any], dict[str, str]] = {}
"""Activities of requests, by task. A plain dict, as it is on every request's path: each
`Binding` removes its entry when reset, which the middleware always does."""
_looping: WeakKeyDictionary[asyncio.Task[Any], dict[str, str]] = WeakKeyDictionary()
"""Activities of service loops, set once per loop; keyed weakly, so an entry goes with its task."""

_ID_CHARS = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789._-")
SUBJECT_KEY = "mainspring_subject"


@functools.cache
def log_context_var(key: str) -> ContextVar[Any]:
    """The variable behind structlog's context-local `key` (the one `bind_contextvars` sets),
    to set it in one call on a hot path. Found through a bind undone at once."""
    token = structlog.contextvars.bind_contextvars(**{key: ...})[key]
    token.var.reset(token)
    return token.var


def current_request_id() -> str | None:
    return request_id_var.get()


def new_request_id() -> str:
    """32 random hex digits: unique, not secret, so no system call per request
    (`random` is reseeded in every forked worker)."""
    return "%032x" % random.getrandbits(128)  # noqa: UP031 (cheaper than a format spec)


def valid_request_id(value: str) -> bool:
    """1 to 128 characters of ``[A-Za-z0-9._-]``: safe to echo in headers and logs."""
    return 0 < len(value) <= 128 and _ID_CHARS.issuperset(value)


def activity_of(task: asyncio.Task[Any] | None) -> dict[str, str] | None:
    """What `task` is doing now, e.g. ``{"request_id": ..., "path": ...}``, or None."""
    if task is None:
        return None
    activity = _activity(task)
    return dict(activity) if activity is not None else None


def _activity(task: asyncio.Task[Any]) -> dict[str, str] | None:
    activity = _bound.get(task)
    return _looping.get(task) if activity is None else activity


def note_activity(**fields: str) -> None:
    """Add detail for the watchdog to the current task's activity, not to log lines."""
    task = _current_task()
    if task is not None:
        activity = _activity(task)
        if activity is not None:
            activity.update(fields)


class Binding:
    """Undoes one `bind_request` with `reset()`, restoring what was before."""

    __slots__ = ("_log_token", "_previous", "_task", "_var_token")

    def __init__(self, request_id: str, activity: dict[str, str]) -> None:
        self._var_token: Token[str | None] = request_id_var.set(request_id)
        self._log_token: Token[Any] = log_context_var("request_id").set(request_id)
        task = self._task = _current_task()
        self._previous: dict[str, str] | None = None
        if task is not None:
            self._previous = _bound.get(task)
            _bound[task] = activity

    def reset(self) -> None:
        self._log_token.var.reset(self._log_token)
        request_id_var.reset(self._var_token)
        if self._task is not None:
            if self._previous is None:
                _bound.pop(self._task, None)
            else:
                _bound[self._task] = self._previous


def bind_request(request_id: str, **activity: str) -> Binding:
    """Tag the current context with `request_id` for log lines and outbound calls; the
    `activity` fields (method, path...) are for the watchdog only, not for log lines."""
    return Binding(request_id, {"request_id": request_id, **activity})


class LoopTags:
    """The log context and watchdog activity of one service loop, in the loop's own task.

    Built once per loop; :meth:`begin` then starts each tick in a fresh log context
    (nothing a previous tick, or whatever started the service, bound survives) named
    by the service, the loop and a new tick id. The tick id is a per-loop random
    prefix and a counter: unique across processes, and cheap on a hot loop. One pass
    over the context per tick does what ``clear_contextvars`` and ``bind_contextvars``
    would do in two.
    """

    __slots__ = ("_activity", "_count", "_names", "_prefix", "_tick_var")

    def __init__(self, service: str, loop: str) -> None:
        self._prefix = f"{uuid.uuid4().hex[:12]}-"
        self._count = itertools.count(1)
        self._activity = {"service": service, "loop": loop, "tick_id": ""}
        structlog.contextvars.clear_contextvars()
        structlog.contextvars.bind_contextvars(**self._activity)
        self._names = {
            f"{STRUCTLOG_KEY_PREFIX}service": service,
            f"{STRUCTLOG_KEY_PREFIX}loop": loop,
        }
        self._tick_var = log_context_var("tick_id")
        request_id_var.set(None)
        task = _current_task()
        if task is not None:
            _looping[task] = self._activity

    def begin(self) -> str:
        tick_id = f"{self._prefix}{next(self._count)}"
        names = self._names
        for var in contextvars.copy_context():
            if var.name.startswith(STRUCTLOG_KEY_PREFIX):
                var.set(names.get(var.name, ...))
        self._tick_var.set(tick_id)
        self._activity["tick_id"] = tick_id
        return tick_id


def set_subject(connection: Any, subject: str) -> None:
    """Record who is authenticated on this request or WebSocket; the access line shows it.

    `connection` is a Starlette `Request`/`WebSocket` or a raw ASGI scope. Also
    binds ``subject`` into the log context of the caller.
    """
    scope: MutableMapping[str, Any] = getattr(connection, "scope", connection)
    scope.setdefault("state", {})[SUBJECT_KEY] = subject
    structlog.contextvars.bind_contextvars(subject=subject)


def subject_of(scope: MutableMapping[str, Any]) -> str | None:
    """The subject from `set_subject`, else an authenticated Starlette ``scope["user"]``."""
    state = scope.get("state")
    if state is not None:
        subject = state.get(SUBJECT_KEY)
        if subject is not None:
            return str(subject)
    user = scope.get("user")
    if user is not None and getattr(user, "is_authenticated", False):
        return str(user.display_name)
    return None


def _current_task() -> asyncio.Task[Any] | None:
    try:
        return asyncio.current_task()
    except RuntimeError:
        return None
