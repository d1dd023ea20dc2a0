"""Test harness: serve an app with plain uvicorn in a subprocess and read its JSON log."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx

ROOT = Path(__file__).resolve().parents[2]
"""packages/mainspring: the directory from which `tests.sample_apps...` imports."""
DEADLINE = 30.0

LogLine = dict[str, Any]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class ServedApp:
    """One uvicorn subprocess; its stdout and stderr go to one file read as JSON lines."""

    def __init__(self, app: str, log_path: Path) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log_path = log_path
        env = {
            key: value for key, value in os.environ.items() if not key.startswith("MAINSPRING_LOG")
        }
        # --no-proxy-headers: uvicorn would otherwise trust X-Forwarded-For from
        # 127.0.0.1 itself, before our middleware decides.
        command = [sys.executable, "-m", "uvicorn", app, "--host", "127.0.0.1"]
        command += ["--port", str(self.port), "--no-proxy-headers"]
        with log_path.open("wb") as out:
            self.process = subprocess.Popen(
                command,
                cwd=ROOT,
                env=env,
                stdout=out,
                stderr=subprocess.STDOUT,
            )
        self.wait_until(self._serving, "the app to serve")

    def _serving(self) -> bool:
        if self.process.poll() is not None:
            raise AssertionError(f"exited {self.process.returncode}:\n{self.output()}")
        try:
            httpx.get(f"{self.url}/openapi.json")
        except httpx.HTTPError:
            return False
        return True

    def output(self) -> str:
        return self.log_path.read_text(errors="replace")

    def lines(self) -> list[LogLine]:
        """Every line of output, parsed; any line that is not a JSON object fails the test."""
        parsed = []
        for text in self.output().splitlines():
            try:
                line = json.loads(text)
            except ValueError:
                raise AssertionError(f"not a JSON log line: {text!r}") from None
            assert isinstance(line, dict), text
            parsed.append(line)
        return parsed

    def lines_for(self, request_id: str) -> list[LogLine]:
        return [line for line in self.lines() if line.get("request_id") == request_id]

    def access_line(self, request_id: str) -> LogLine:
        """Wait for the access line of `request_id`: it is written after the response."""
        found: list[LogLine] = []

        def logged() -> bool:
            found[:] = [
                line
                for line in self.lines_for(request_id)
                if line.get("logger") == "mainspring.access"
            ]
            return bool(found)

        self.wait_until(logged, f"the access line of {request_id}")
        return found[0]

    def wait_until(self, condition: Callable[[], bool], what: str) -> None:
        deadline = time.monotonic() + DEADLINE
        while not condition():
            if time.monotonic() > deadline:
                raise AssertionError(f"timed out waiting for {what}:\n{self.output()}")
            time.sleep(0.05)

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=DEADLINE)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=10)
