"""configure_logging: one format for structlog and stdlib loggers; tick context."""

from __future__ import annotations

import asyncio
import io
import json
import logging
import logging.config
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import structlog
from structlog.contextvars import bind_contextvars, get_contextvars
from uvicorn.config import LOGGING_CONFIG

from mainspring.observability.access import ACCESS_LOGGER, access_log, set_access_log
from mainspring.observability.context import (
    LoopTags,
    activity_of,
    bind_request,
    current_request_id,
    note_activity,
)
from mainspring.observability.logging import (
    ADOPTED_LOGGERS,
    HANDLER_NAME,
    REPLACED_LOGGERS,
    configure_logging,
)

log = structlog.get_logger("tests.obs")


@pytest.fixture(autouse=True)
def restore_logging(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """configure_logging changes process-wide state; put it back for the other tests."""
    monkeypatch.delenv("MAINSPRING_LOG_FORMAT", raising=False)
    monkeypatch.delenv("MAINSPRING_LOG_LEVEL", raising=False)
    config = structlog.get_config()
    loggers = [logging.getLogger(name) for name in ("", *ADOPTED_LOGGERS, *REPLACED_LOGGERS)]
    loggers.append(logging.getLogger(ACCESS_LOGGER))
    saved = [(lg, list(lg.handlers), lg.level, lg.propagate, lg.disabled) for lg in loggers]
    sink = access_log()
    try:
        yield
    finally:
        set_access_log(sink)
        for lg, handlers, level, propagate, disabled in saved:
            for handler in lg.handlers:
                if handler not in handlers:
                    handler.close()
            lg.handlers[:] = handlers
            lg.setLevel(level)
            lg.propagate = propagate
            lg.disabled = disabled
        structlog.configure(**config)
        structlog.contextvars.clear_contextvars()


def json_lines(stream: io.StringIO) -> list[dict[str, Any]]:
    return [json.loads(line) for line in stream.getvalue().splitlines()]


class Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_structlog_and_stdlib_lines_share_one_json_shape() -> None:
    stream = io.StringIO()
    configure_logging(stream=stream)
    bind_contextvars(request_id="r-1")

    log.info("order placed", order_id=3)
    logging.getLogger("sqlalchemy.engine").warning("slow query took %d ms", 1200)

    first, second = json_lines(stream)
    assert first == {
        "timestamp": first["timestamp"],
        "level": "info",
        "logger": "tests.obs",
        "event": "order placed",
        "order_id": 3,
        "request_id": "r-1",
    }
    assert second == {
        "timestamp": second["timestamp"],
        "level": "warning",
        "logger": "sqlalchemy.engine",
        "event": "slow query took 1200 ms",
        "request_id": "r-1",
    }
    assert first["timestamp"].endswith("Z")
    assert list(first)[:4] == list(second)[:4] == ["timestamp", "level", "logger", "event"]


def test_exceptions_from_either_side_carry_their_traceback() -> None:
    stream = io.StringIO()
    configure_logging(stream=stream, json=True)
    try:
        raise KeyError("missing")
    except KeyError:
        log.exception("lookup failed")
        logging.getLogger("asyncio").exception("task died")

    ours, theirs = json_lines(stream)
    for line in (ours, theirs):
        assert line["level"] == "error"
        assert line["exception"].startswith("Traceback (most recent call last)")
        assert "KeyError: 'missing'" in line["exception"]


def test_secrets_are_redacted_in_both_kinds_of_lines() -> None:
    stream = io.StringIO()
    configure_logging(stream=stream, json=True)

    log.info("calling", headers={"Authorization": "Bearer abc123"}, api_token="t0k")
    logging.getLogger("uvicorn.error").info("sent Authorization: Bearer xyz789 to upstream")

    output = stream.getvalue()
    for secret in ("abc123", "t0k", "xyz789"):
        assert secret not in output
    ours, theirs = json_lines(stream)
    assert ours["headers"] == {"Authorization": "[redacted]"}
    assert theirs["event"] == "sent Authorization: Bearer [redacted] to upstream"


def test_http_client_request_lines_are_written_at_debug() -> None:
    stream = io.StringIO()
    request_line = 'HTTP Request: GET http://127.0.0.1/scoreboard "HTTP/1.1 200 OK"'
    configure_logging(stream=stream, json=True, level="info")
    logging.getLogger("httpx").info(request_line)
    logging.getLogger("httpx").warning("connection pool is full")
    assert [(line["level"], line["event"]) for line in json_lines(stream)] == [
        ("warning", "connection pool is full")
    ]

    stream = io.StringIO()
    configure_logging(stream=stream, json=True, level="debug")
    logging.getLogger("httpx").info(request_line)
    assert [(line["level"], line["event"]) for line in json_lines(stream)] == [
        ("debug", request_line)
    ]


def test_a_terminal_gets_the_console_format() -> None:
    stream = Terminal()
    configure_logging(stream=stream)

    log.info("order placed", order_id=3)

    text = stream.getvalue()
    assert "order placed" in text
    assert "order_id" in text
    assert not text.startswith("{")


def test_the_environment_chooses_format_and_level(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MAINSPRING_LOG_FORMAT", "console")
    monkeypatch.setenv("MAINSPRING_LOG_LEVEL", "warning")
    stream = io.StringIO()
    configure_logging(stream=stream)

    log.info("hidden")
    logging.getLogger("uvicorn.error").info("hidden too")
    log.warning("shown")
    logging.getLogger("uvicorn.error").warning("shown too")

    text = stream.getvalue()
    assert "hidden" not in text
    assert "shown" in text
    assert "shown too" in text
    assert not text.startswith("{")


def test_explicit_arguments_win_over_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MAINSPRING_LOG_FORMAT", "console")
    monkeypatch.setenv("MAINSPRING_LOG_LEVEL", "ERROR")
    stream = Terminal()
    configure_logging(stream=stream, json=True, level="DEBUG")

    log.debug("details")

    assert json_lines(stream)[0]["event"] == "details"


@pytest.mark.parametrize(
    ("env", "value", "message"),
    [
        ("MAINSPRING_LOG_FORMAT", "xml", "MAINSPRING_LOG_FORMAT must be"),
        ("MAINSPRING_LOG_LEVEL", "loud", "unknown log level 'LOUD'"),
    ],
)
def test_a_bad_setting_is_a_clear_error(
    monkeypatch: pytest.MonkeyPatch, env: str, value: str, message: str
) -> None:
    monkeypatch.setenv(env, value)
    with pytest.raises(ValueError, match=message):
        configure_logging(stream=io.StringIO())


def test_configuring_again_replaces_rather_than_adds() -> None:
    first, second = io.StringIO(), io.StringIO()
    configure_logging(stream=first, json=True)
    configure_logging(stream=second, json=True)

    log.info("once")

    assert first.getvalue() == ""
    assert [line["event"] for line in json_lines(second)] == ["once"]
    ours = [h for h in logging.getLogger().handlers if h.get_name() == HANDLER_NAME]
    assert len(ours) == 1


def test_uvicorns_own_handlers_give_way_and_its_access_log_goes_quiet() -> None:
    logging.config.dictConfig(LOGGING_CONFIG)
    stream = io.StringIO()
    configure_logging(stream=stream, json=True)

    logging.getLogger("uvicorn.error").info("Started server process [%d]", 42)
    logging.getLogger("uvicorn.access").info('%s - "%s %s"', "127.0.0.1", "GET", "/")

    (line,) = json_lines(stream)
    assert line["logger"] == "uvicorn.error"
    assert line["event"] == "Started server process [42]"
    # uvicorn checks this to decide whether to build access lines at all.
    assert not logging.getLogger("uvicorn.access").hasHandlers()


def test_access_lines_can_go_to_their_own_file(tmp_path: Path) -> None:
    stream = io.StringIO()
    path = tmp_path / "access.log"
    configure_logging(stream=stream, json=False, access_log_path=path)

    write_access("http request", status=200)
    log.info("app line")

    (access,) = [json.loads(line) for line in path.read_text().splitlines()]
    assert (access["event"], access["status"]) == ("http request", 200)
    assert "app line" in stream.getvalue()
    assert "http request" not in stream.getvalue()

    configure_logging(stream=stream, json=True)
    write_access("back on the main stream", status=200)
    assert json.loads(stream.getvalue().splitlines()[-1])["event"] == "back on the main stream"

    configure_logging(stream=stream, json=True, level="WARNING")
    assert access_log() is None, "access lines are INFO: hidden above it"


def write_access(event: str, **fields: object) -> None:
    sink = access_log()
    assert sink is not None
    sink.write(event, dict(fields))


async def test_a_tick_logs_its_service_and_tick_id_in_a_clean_context() -> None:
    stream = io.StringIO()
    configure_logging(stream=stream, json=True)
    outer = bind_request("req-outer")
    bind_contextvars(user="u-1")
    seen: dict[str, object] = {}

    async def loop_task() -> None:
        tags = LoopTags("nba-poller", "scores")
        tick_id = seen["tick_id"] = tags.begin()
        log.info("fetched scores", games=3)
        seen["request_id"] = current_request_id()
        seen["activity"] = activity_of(asyncio.current_task())
        bind_contextvars(scratch="left by the first tick")
        seen["second"] = tags.begin()
        log.info("second tick")
        assert tick_id != seen["second"]

    await asyncio.create_task(loop_task())
    log.info("after the loop")

    tick_line, second_line, after = json_lines(stream)
    assert tick_line["service"] == "nba-poller"
    assert tick_line["loop"] == "scores"
    assert tick_line["tick_id"] == seen["tick_id"]
    assert "request_id" not in tick_line
    assert "user" not in tick_line
    assert seen["request_id"] is None
    assert seen["activity"] == {
        "service": "nba-poller",
        "loop": "scores",
        "tick_id": seen["tick_id"],
    }
    assert second_line["tick_id"] == seen["second"]
    assert "scratch" not in second_line
    assert (after["request_id"], after["user"]) == ("req-outer", "u-1")
    assert "tick_id" not in after
    assert current_request_id() == "req-outer"
    assert activity_of(asyncio.current_task()) == {"request_id": "req-outer"}
    outer.reset()


async def test_activity_follows_the_task_and_goes_when_unbound() -> None:
    task = asyncio.current_task()
    binding = bind_request("req-9")
    note_activity(method="GET", path="/slow")

    assert activity_of(task) == {"request_id": "req-9", "method": "GET", "path": "/slow"}
    assert get_contextvars() == {"request_id": "req-9"}, "activity detail is not logged"
    binding.reset()
    assert activity_of(task) is None
    assert activity_of(None) is None
    assert current_request_id() is None


async def test_another_task_has_its_own_activity() -> None:
    binding = bind_request("req-main")
    seen: list[dict[str, str] | None] = []

    async def child() -> None:
        seen.append(activity_of(asyncio.current_task()))

    await asyncio.create_task(child())
    binding.reset()
    assert seen == [None]


def test_the_access_file_is_reopened_after_logrotate_moves_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("mainspring.observability.access.ROTATION_CHECK_INTERVAL", 0.0)
    path = tmp_path / "access.log"
    configure_logging(stream=io.StringIO(), json=True, access_log_path=path)
    write_access("before the move")
    path.rename(tmp_path / "access.log.1")
    write_access("around the move")
    write_access("after the move")

    moved = [json.loads(line)["event"] for line in (tmp_path / "access.log.1").open()]
    fresh = [json.loads(line)["event"] for line in path.open()]
    assert moved[0] == "before the move"
    assert fresh[-1] == "after the move"
    assert moved + fresh == ["before the move", "around the move", "after the move"]
