"""`markets serve --replay` (the demo, `make demo`) as real processes, tried as a user would:
a feed port another program holds, logs, Ctrl-C early and late, kill -9, and a second run in
the same directory."""

from __future__ import annotations

import contextlib
import json
import os
import re
import signal
import subprocess
import sys
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import httpx
import pytest
from process_support import (
    EXIT_DEADLINE,
    STARTUP_DEADLINE,
    free_port,
    session_survivors,
    wait_for,
)

EXIT_PORT_UNAVAILABLE = 5
FEED_LINE = "replay feed"
"""The first line that names the feed, with its URL."""


class Demo:
    """One `markets serve --replay` process, in a session of its own (as a terminal's Ctrl-C
    reaches a whole process group), run from `directory` with its output in a file."""

    def __init__(self, directory: Path, index: int, *args: str) -> None:
        self.port = free_port()
        self.log = directory / f"demo-{index}.log"
        env = {
            **os.environ,
            # Leases, pidfiles and the demo database in the test's own directory.
            "TMPDIR": str(directory / "tmp"),
            "MAINSPRING_PIDFILE_DIR": str(directory / "pids"),
        }
        for name in ("DATABASE_URL", "ESPN_BASE_URL", "MAINSPRING_LOG_LEVEL"):
            env.pop(name, None)
        (directory / "tmp").mkdir(exist_ok=True)
        command = [sys.executable, "-m", "markets.cli", "serve", "--replay"]
        with self.log.open("wb") as out:
            self.process = subprocess.Popen(
                [*command, "--port", str(self.port), *args],
                cwd=directory,
                env=env,
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def output(self) -> str:
        return self.log.read_text(errors="replace")

    def lines(self) -> list[str]:
        return [line for line in self.output().splitlines() if line.strip()]

    def ticks(self, league: str) -> int:
        """Score polls of `league` done so far."""
        count = 0
        for line in self.lines():
            try:
                record = json.loads(line)
            except ValueError:
                continue
            if record.get("service") == league and record.get("loop") == "scores":
                count += record.get("event") == "tick done"
        return count

    def wait_line(self, text: str) -> str:
        found: list[str] = []

        def seen() -> bool:
            self._still_running()
            found.extend(line for line in self.lines() if text in line)
            return bool(found)

        wait_for(seen, STARTUP_DEADLINE, f"a line with {text!r}")
        return found[0]

    def feed_port(self) -> int:
        match = re.search(r"http://127\.0\.0\.1:(\d+)", self.wait_line(FEED_LINE))
        assert match, self.output()
        return int(match[1])

    def wait_markets(self) -> list[dict[str, object]]:
        """The markets, once the app has opened some from the feed."""
        found: list[dict[str, object]] = []

        def opened() -> bool:
            self._still_running()
            try:
                found[:] = httpx.get(f"{self.url}/markets?limit=200").json()["items"]
            except (httpx.HTTPError, ValueError, KeyError):
                return False
            return bool(found)

        wait_for(opened, STARTUP_DEADLINE, "markets from the replay feed")
        return found

    def interrupt(self) -> int:
        """Ctrl-C in its terminal; the exit code."""
        os.killpg(self.process.pid, signal.SIGINT)
        return self.wait_exit()

    def wait_exit(self) -> int:
        try:
            return self.process.wait(timeout=EXIT_DEADLINE)
        except subprocess.TimeoutExpired:
            raise AssertionError(f"still running:\n{self.output()}") from None

    def _still_running(self) -> None:
        if self.process.poll() is not None:
            raise AssertionError(f"exited {self.process.returncode}:\n{self.output()}")

    def kill_group(self) -> None:
        """Whatever is left of its session, however the test ended."""
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.process.pid, signal.SIGKILL)
        self.process.wait(timeout=10)


@pytest.fixture
def demos(tmp_path: Path) -> Iterator[list[Demo]]:
    started: list[Demo] = []
    try:
        yield started
    finally:
        for demo in started:
            demo.kill_group()


def start(demos: list[Demo], directory: Path, *args: str) -> Demo:
    demo = Demo(directory, len(demos), *args)
    demos.append(demo)
    return demo


class Stranger:
    """Another program's HTTP server, counting the requests it gets."""

    def __init__(self) -> None:
        self.requests = 0
        stranger = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                stranger.requests += 1
                self.send_error(404)

            def log_message(self, format: str, *args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.port = self.server.server_address[1]


@pytest.fixture
def stranger() -> Iterator[Stranger]:
    other = Stranger()
    thread = threading.Thread(target=other.server.serve_forever, daemon=True)
    thread.start()
    try:
        yield other
    finally:
        other.server.shutdown()
        other.server.server_close()
        thread.join(timeout=10)


def test_a_feed_port_held_by_another_program_is_refused_in_one_line(
    demos: list[Demo], tmp_path: Path, stranger: Stranger
) -> None:
    demo = start(demos, tmp_path, "--replay-port", str(stranger.port))

    code = demo.wait_exit()

    assert code == EXIT_PORT_UNAVAILABLE, demo.output()
    (line,) = demo.lines()
    assert f"cannot listen on 127.0.0.1:{stranger.port}" in line
    assert stranger.requests == 0


def test_the_demo_logs_json_lines_only_without_http_client_lines(
    demos: list[Demo], tmp_path: Path
) -> None:
    demo = start(demos, tmp_path)
    demo.wait_markets()
    # A few polls of both leagues' scores (every 2 s in the demo).
    wait_for(
        lambda: min(demo.ticks("nba"), demo.ticks("mlb")) >= 3, STARTUP_DEADLINE, "score polls"
    )

    assert demo.interrupt() == 0
    lines = demo.lines()
    records = [json.loads(line) for line in lines]  # each line is one JSON object
    assert all(isinstance(record, dict) for record in records)
    assert not [r for r in records if r["logger"].startswith(("httpx", "httpcore"))]
    assert not [line for line in lines if "HTTP Request" in line]
    assert "Traceback" not in demo.output()


def test_a_killed_demo_leaves_nothing_running_and_the_next_starts_fresh(
    demos: list[Demo], tmp_path: Path
) -> None:
    first = start(demos, tmp_path)
    feed_port = first.feed_port()
    first_games = {m["game"]["espn_event_id"] for m in first.wait_markets()}  # type: ignore[index]
    session = os.getsid(first.process.pid)
    assert session == first.process.pid  # started in a session of its own

    first.process.kill()
    first.process.wait(timeout=EXIT_DEADLINE)

    # Nothing it started survives in its session or process group, whatever it started.
    assert session_survivors(session) == []
    with pytest.raises(httpx.ConnectError):
        httpx.get(f"http://127.0.0.1:{feed_port}/_fake/stats")

    second = start(demos, tmp_path)
    second_games = {m["game"]["espn_event_id"] for m in second.wait_markets()}  # type: ignore[index]
    assert second_games
    assert not first_games & second_games
    assert second.interrupt() == 0


@pytest.mark.parametrize("moment", [FEED_LINE, "Waiting for application startup"])
def test_an_early_ctrl_c_stops_the_demo_without_a_traceback(
    demos: list[Demo], tmp_path: Path, moment: str
) -> None:
    demo = start(demos, tmp_path)
    demo.wait_line(moment)

    code = demo.interrupt()

    assert code == 0, demo.output()
    assert "Traceback" not in demo.output()
    assert "CancelledError" not in demo.output()


def test_two_demos_from_one_directory_each_run_their_pollers(
    demos: list[Demo], tmp_path: Path
) -> None:
    """Each demo has a database of its own, so its singletons are its own: neither stands by
    behind the other (only the one that holds the lease would open markets)."""
    both = [start(demos, tmp_path), start(demos, tmp_path)]
    games = [{m["game"]["espn_event_id"] for m in demo.wait_markets()} for demo in both]  # type: ignore[index]
    assert all(games)
    namespaces = [httpx.get(f"{demo.url}/debug/status").json()["app"] for demo in both]
    assert namespaces[0]["lease_namespace"] != namespaces[1]["lease_namespace"]
