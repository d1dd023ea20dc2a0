"""What `mainspring run` gives every app, in real processes: the URL it serves, request ids
and JSON errors for a plain FastAPI app, workers from WEB_CONCURRENCY, one-line refusals of
bad addresses; and a `--help` that loads none of the server."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
from typing import Any

import httpx
import psutil
import pytest
from process_support import EXIT_DEADLINE, ROOT, STARTUP_DEADLINE, Runner, free_port, wait_for

from mainspring.server.exitcodes import EXIT_APP_ERROR, EXIT_OK, StartError
from mainspring.server.options import RunOptions

APP = "tests.sample_apps.served_app:app"


def log_lines(output: str) -> list[dict[str, Any]]:
    """The JSON log lines of a run (its default format when stderr is not a terminal)."""
    return [json.loads(line) for line in output.splitlines() if line.startswith("{")]


def serving_lines(output: str) -> list[dict[str, Any]]:
    return [line for line in log_lines(output) if line["event"] == "serving"]


@pytest.mark.parametrize("workers", ["1", "2"])
def test_the_url_served_is_logged_once_even_for_a_free_port(runner: Runner, workers: str) -> None:
    process = runner.start(APP, "--port", "0", "--workers", workers)

    def logged() -> bool:
        if process.poll() is not None:
            raise AssertionError(f"exited {process.returncode}:\n{runner.output(process)}")
        return bool(serving_lines(runner.output(process)))

    wait_for(logged, STARTUP_DEADLINE, "the serving line")
    (line,) = serving_lines(runner.output(process))
    url = line["url"]
    assert url.startswith("http://127.0.0.1:")
    assert line["docs"] == f"{url}/docs"
    wait_for(lambda: _answers(f"{url}/ping"), STARTUP_DEADLINE, "the logged URL to answer")

    process.send_signal(signal.SIGTERM)
    assert runner.wait_exit(process) == EXIT_OK
    assert len(serving_lines(runner.output(process))) == 1


def _answers(url: str) -> bool:
    try:
        return httpx.get(url).status_code == 200
    except httpx.TransportError:
        return False


def test_a_plain_fastapi_app_gets_request_ids_access_lines_and_json_500s(runner: Runner) -> None:
    port = free_port()
    process = runner.start(APP, "--port", str(port))
    runner.wait_serving(process, port)
    base = f"http://127.0.0.1:{port}"

    ping = httpx.get(f"{base}/ping")
    boom = httpx.get(f"{base}/boom")
    process.send_signal(signal.SIGTERM)
    assert runner.wait_exit(process) == EXIT_OK

    assert len(ping.headers["x-request-id"]) == 32
    assert boom.status_code == 500
    assert boom.json() == {"error": "internal_error", "request_id": boom.headers["x-request-id"]}
    access = [line for line in log_lines(runner.output(process)) if line["event"] == "http request"]
    pings = [line for line in access if line["route"] == "/ping"]
    assert ping.headers["x-request-id"] in {line["request_id"] for line in pings}
    (failed,) = [line for line in access if line["route"] == "/boom"]
    assert (failed["status"], failed["error"]) == (500, "RuntimeError")


def test_web_concurrency_sets_the_number_of_workers(runner: Runner) -> None:
    port = free_port()
    master = runner.start(APP, "--port", str(port), env={"WEB_CONCURRENCY": "2"})
    worker = runner.wait_serving(master, port)

    assert worker != master.pid
    wait_for(lambda: len(psutil.Process(master.pid).children()) == 2, EXIT_DEADLINE, "two workers")


@pytest.mark.parametrize(
    ("option", "value", "message"),
    [
        ("--port", "99999", "Invalid value for '--port'"),
        ("--port", "-1", "Invalid value for '--port'"),
        ("--port", "eighty", "Invalid value for '--port'"),
        ("--host", "no-such-host.invalid", "host 'no-such-host.invalid'"),
    ],
)
def test_a_bad_address_is_refused_in_one_line_with_exit_2(
    runner: Runner, option: str, value: str, message: str
) -> None:
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "mainspring.cli",
            "run",
            "tests.sample_apps.slow:app",
            option,
            value,
        ],
        cwd=ROOT,
        env=runner.env,
        capture_output=True,
        text=True,
        timeout=STARTUP_DEADLINE,
    )
    assert result.returncode == EXIT_APP_ERROR, result.stderr
    (line,) = result.stderr.strip().splitlines()
    assert line.startswith("mainspring")
    assert message in line


@pytest.mark.parametrize(
    ("host", "port", "message"),
    [
        ("127.0.0.1", 99999, "port 99999 is not a TCP port"),  # getaddrinfo: port 34463
        ("127.0.0.1", -1, "port -1 is not a TCP port"),
        ("no-such-host.invalid", 8000, "host 'no-such-host.invalid'"),
    ],
)
def test_run_options_refuse_a_bad_address_for_any_caller(
    host: str, port: int, message: str
) -> None:
    """`markets serve` and other programs build RunOptions without the CLI's checks."""
    with pytest.raises(StartError) as refused:
        RunOptions(app="tests.sample_apps.slow:app", host=host, port=port).check()
    assert refused.value.exit_code == EXIT_APP_ERROR
    assert message in refused.value.message


HEAVY_MODULES = ("fastapi", "starlette", "uvicorn", "gunicorn", "structlog", "httpx", "rich")


@pytest.mark.parametrize("command", [["--help"], ["run", "--help"], ["status", "--help"]])
def test_help_imports_neither_the_server_nor_the_web_stack(command: list[str]) -> None:
    script = (
        "import contextlib, io, json, sys\n"
        f"sys.argv = ['mainspring', *{command!r}]\n"
        "from mainspring.cli import main\n"
        "with contextlib.redirect_stdout(io.StringIO()) as help_text:\n"
        "    try:\n"
        "        main()\n"
        "    except SystemExit as exit:\n"
        "        code = exit.code\n"
        f"loaded = [name for name in {HEAVY_MODULES!r} if name in sys.modules]\n"
        "print(json.dumps({'code': code, 'loaded': loaded, 'help': help_text.getvalue()}))\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=STARTUP_DEADLINE
    )
    outcome = json.loads(result.stdout)

    assert outcome["code"] == 0, result.stderr
    assert "Usage: mainspring" in outcome["help"]
    assert outcome["loaded"] == []
