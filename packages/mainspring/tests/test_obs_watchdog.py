"""The loop watchdog: one warning per blocked stretch, naming the blocking line and its request."""

from __future__ import annotations

import asyncio
import copy
import json
import re
import sys
import threading
import time
from pathlib import Path
from typing import Any, cast

import httpx
from process_support import ROOT, Runner, free_port, wait_for
from prometheus_client import CollectorRegistry
from structlog.typing import FilteringBoundLogger

from mainspring.observability.context import bind_request
from mainspring.observability.metrics import RuntimeMetrics
from mainspring.observability.watchdog import LoopWatchdog, is_project_file, project_stack

WAIT = 10.0
HERE = Path(__file__).resolve()


class Recorder:
    """Stands in for the structlog logger; lets a test wait for the n-th line."""

    def __init__(self) -> None:
        self.lines: list[tuple[str, str, dict[str, Any]]] = []
        self._changed = threading.Condition()

    def _record(self, level: str, event: str, fields: dict[str, Any]) -> None:
        with self._changed:
            self.lines.append((level, event, fields))
            self._changed.notify_all()

    def warning(self, event: str, **fields: Any) -> None:
        self._record("warning", event, fields)

    def error(self, event: str, **fields: Any) -> None:
        self._record("error", event, fields)

    def wait_for(self, count: int) -> None:
        with self._changed:
            if not self._changed.wait_for(lambda: len(self.lines) >= count, WAIT):
                raise AssertionError(f"expected {count} lines, got {self.lines}")


def watchdog(recorder: Recorder, registry: CollectorRegistry, **options: Any) -> LoopWatchdog:
    dog = LoopWatchdog(
        asyncio.get_running_loop(),
        metrics=RuntimeMetrics(registry),
        logger=cast(FilteringBoundLogger, recorder),
        **options,
    )
    dog.start()
    return dog


def line_of(marker: str, path: Path = HERE) -> int:
    lines = path.read_text().splitlines()
    return next(n for n, line in enumerate(lines, 1) if marker in line and "line_of(" not in line)


async def test_a_responsive_loop_gets_no_warning_and_its_lag_is_measured() -> None:
    recorder, registry = Recorder(), CollectorRegistry()
    dog = watchdog(recorder, registry, threshold=1.0, interval=0.001)
    try:
        answered = threading.Event()

        def count_heartbeats() -> None:
            while not answered.is_set():
                if (registry.get_sample_value("mainspring_event_loop_lag_seconds_count") or 0) >= 5:
                    answered.set()
                time.sleep(0.005)

        await asyncio.wait_for(asyncio.to_thread(count_heartbeats), WAIT)
    finally:
        dog.stop()
    assert recorder.lines == []
    assert registry.get_sample_value("mainspring_event_loop_blocked_total") == 0


async def test_each_block_gets_one_warning_with_the_blocking_line() -> None:
    recorder, registry = Recorder(), CollectorRegistry()
    dog = watchdog(recorder, registry, threshold=0.1)
    try:
        time.sleep(0.5)  # noqa: ASYNC251 first block
        await asyncio.to_thread(recorder.wait_for, 1)
        time.sleep(0.5)  # noqa: ASYNC251 second block
        await asyncio.to_thread(recorder.wait_for, 2)
    finally:
        dog.stop()
    assert [(level, event) for level, event, _ in recorder.lines] == [
        ("warning", "event loop blocked"),
        ("warning", "event loop blocked"),
    ]
    first, second = (fields for _, _, fields in recorder.lines)
    function = "test_each_block_gets_one_warning_with_the_blocking_line"
    assert first["blocked_at"][0] == f"{__file__}:{line_of('ASYNC251 first block')} in {function}"
    assert second["blocked_at"][0] == f"{__file__}:{line_of('ASYNC251 second block')} in {function}"
    assert first["blocked_ms"] >= 100
    assert registry.get_sample_value("mainspring_event_loop_blocked_total") == 2


async def test_the_warning_names_the_request_that_blocked() -> None:
    recorder, registry = Recorder(), CollectorRegistry()
    dog = watchdog(recorder, registry, threshold=0.1)

    async def handler() -> None:
        binding = bind_request("req-42", path="/slow")
        try:
            time.sleep(0.5)  # noqa: ASYNC251
        finally:
            binding.reset()

    try:
        await asyncio.create_task(handler())
        await asyncio.to_thread(recorder.wait_for, 1)
    finally:
        dog.stop()
    fields = recorder.lines[0][2]
    assert fields["request_id"] == "req-42"
    assert fields["path"] == "/slow"


async def test_a_loop_stuck_past_stuck_after_is_reported_while_still_blocked() -> None:
    recorder, registry = Recorder(), CollectorRegistry()
    dog = watchdog(recorder, registry, threshold=0.05, stuck_after=0.2)
    try:
        deadline = time.monotonic() + WAIT
        while not recorder.lines and time.monotonic() < deadline:
            time.sleep(0.01)  # noqa: ASYNC251 the loop stays blocked until the error line
        await asyncio.to_thread(recorder.wait_for, 2)
    finally:
        dog.stop()
    assert [(level, event) for level, event, _ in recorder.lines] == [
        ("error", "event loop still blocked"),
        ("warning", "event loop blocked"),
    ]
    assert recorder.lines[0][2]["blocked_ms"] >= 200


def test_stop_is_bounded_when_the_loop_never_answers() -> None:
    loop = asyncio.new_event_loop()  # never run: every heartbeat goes unanswered
    recorder = Recorder()
    dog = LoopWatchdog(loop, threshold=0.05, logger=cast(FilteringBoundLogger, recorder))
    try:
        dog.start()
        dog.stop()
        assert dog._thread is not None
        assert not dog._thread.is_alive()
        assert recorder.lines == []
    finally:
        loop.close()


class CopiedInside:
    stack: list[str] = []

    def __deepcopy__(self, memo: dict[int, Any]) -> CopiedInside:
        CopiedInside.stack = project_stack(sys._getframe())  # inside the library call
        return self


def test_the_stack_keeps_app_frames_and_the_library_call_they_made() -> None:
    copy.deepcopy(CopiedInside())  # the library call
    stack = CopiedInside.stack
    assert stack[0] == f"{__file__}:{line_of('# inside the library call')} in __deepcopy__"
    assert re.fullmatch(r".*/copy\.py:\d+ in deepcopy", stack[1])
    function = "test_the_stack_keeps_app_frames_and_the_library_call_they_made"
    assert stack[2] == f"{__file__}:{line_of('# the library call')} in {function}"
    assert len(stack) == 3  # pytest's own frames are gone


def test_project_files_exclude_the_stdlib_installed_packages_and_mainspring() -> None:
    import asyncio.events

    import starlette

    import mainspring.runtime

    assert is_project_file(__file__)
    assert not is_project_file(asyncio.events.__file__)
    assert not is_project_file(starlette.__file__)
    assert not is_project_file(str(mainspring.runtime.__file__))
    assert not is_project_file("<frozen importlib._bootstrap>")


def test_a_blocking_handler_under_uvicorn_gets_exactly_one_warning(runner: Runner) -> None:
    app_file = ROOT / "tests" / "sample_apps" / "watchdog_app.py"
    port = free_port()
    process = runner.start("tests.sample_apps.watchdog_app:app", "--port", str(port))
    runner.wait_serving(process, port)
    assert httpx.get(f"http://127.0.0.1:{port}/block", timeout=WAIT).status_code == 200
    assert httpx.get(f"http://127.0.0.1:{port}/ping", timeout=WAIT).status_code == 200
    wait_for(lambda: "event loop blocked" in runner.output(process), WAIT, "the watchdog's warning")
    process.terminate()
    assert runner.wait_exit(process) == 0
    warnings = [
        json.loads(line)
        for line in runner.output(process).splitlines()
        if "event loop blocked" in line
    ]
    assert len(warnings) == 1, warnings
    warning = warnings[0]
    assert warning["level"] == "warning"
    assert warning["request_id"] == "blocking-request-1"
    blocking_line = line_of("BLOCKING CALL", app_file)
    frame = re.fullmatch(r"(.*):(\d+) in (\w+)", warning["blocked_at"][0])
    assert frame is not None, warning["blocked_at"]
    file, line, function = frame.groups()
    assert (Path(file).resolve(), int(line), function) == (app_file, blocking_line, "block")
    assert len(warning["blocked_at"]) == 1  # uvicorn, starlette, fastapi and asyncio are trimmed
