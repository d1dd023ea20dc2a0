"""Cold start: `mainspring run markets.main:app --workers 4` on a fresh database, the README's
command, from spawn to every worker booted and `/ready` answering 200, then SIGTERM to exit.

Each run gets a new SQLite file (or, with `--postgres URL`, a new PostgreSQL database,
dropped after). The start is split at the master's "Starting gunicorn" line: before it the
master imports the app; after it the workers fork, migrate once under the database lock
(the first one; the others wait and find the schema at head) and open their resources.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
import uuid
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

import asyncpg
from sqlalchemy.engine import make_url

WORKERS = 4
DEADLINE = 180.0


@dataclass(frozen=True)
class ColdStart:
    import_s: float
    """Spawn to the master's "Starting gunicorn" line: interpreter start and app import."""
    ready_s: float
    """Spawn to every worker booted and /ready answering 200."""
    stop_s: float
    """SIGTERM to the master's exit."""


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def events(log: Path) -> list[tuple[str, str]]:
    """(timestamp, event) of every JSON line so far."""
    found = []
    for line in log.read_text(errors="replace").splitlines():
        if line.startswith("{"):
            record = json.loads(line)
            found.append((record["timestamp"], record["event"]))
    return found


def ready(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=1.0) as response:
            return response.status == 200
    except (urllib.error.URLError, ConnectionError, TimeoutError):
        return False


def measure(database_url: str, tmp: Path) -> ColdStart:
    port = free_port()
    log = tmp / "server.log"
    env = {**os.environ, "DATABASE_URL": database_url, "MAINSPRING_PIDFILE_DIR": str(tmp)}
    command = [sys.executable, "-m", "mainspring.cli", "run", "markets.main:app"]
    command += ["--port", str(port), "--workers", str(WORKERS)]
    with log.open("wb") as out:
        started = time.monotonic()
        wall_start = time.time()
        proc = subprocess.Popen(command, env=env, stdout=out, stderr=subprocess.STDOUT)
    try:
        while True:
            if proc.poll() is not None:
                raise RuntimeError(f"exited {proc.returncode}:\n{log.read_text()[-3000:]}")
            if time.monotonic() - started > DEADLINE:
                raise RuntimeError(f"not ready in {DEADLINE} s:\n{log.read_text()[-3000:]}")
            booted = [e for _, e in events(log) if e == "Application startup complete."]
            if len(booted) == WORKERS and ready(f"http://127.0.0.1:{port}/ready"):
                break
            time.sleep(0.02)
        ready_s = time.monotonic() - started
        (gunicorn_at,) = [t for t, e in events(log) if e.startswith("Starting gunicorn")]
        import_s = _epoch(gunicorn_at) - wall_start
        stopping = time.monotonic()
        proc.send_signal(signal.SIGTERM)
        code = proc.wait(timeout=DEADLINE)
        if code != 0:
            raise RuntimeError(f"exit {code}:\n{log.read_text()[-3000:]}")
        return ColdStart(import_s, ready_s, time.monotonic() - stopping)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def _epoch(timestamp: str) -> float:
    return datetime.fromisoformat(timestamp.replace("Z", "+00:00")).timestamp()


def fresh_postgres(server: str) -> tuple[str, str]:
    name = f"cold_start_{uuid.uuid4().hex[:12]}"
    _admin(server, f'CREATE DATABASE "{name}"')
    return name, make_url(server).set(database=name).render_as_string(hide_password=False)


def _admin(server: str, statement: str) -> None:
    async def run() -> None:
        conn = await asyncpg.connect(server)
        try:
            await conn.execute(statement)
        finally:
            await conn.close()

    asyncio.run(run())


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--postgres", metavar="URL", help="a server to create databases on")
    args = parser.parse_args(argv)
    engine = "postgresql" if args.postgres else "sqlite"
    print(f"cold start of {WORKERS} workers on a fresh {engine} database, {args.runs} runs")
    print(f"{'run':>4} {'import s':>9} {'ready s':>8} {'stop s':>7}")
    results = []
    for run in range(1, args.runs + 1):
        with tempfile.TemporaryDirectory() as tmp:
            if args.postgres:
                name, url = fresh_postgres(args.postgres)
            else:
                name, url = "", f"sqlite:///{Path(tmp) / 'markets.db'}"
            try:
                result = measure(url, Path(tmp))
            finally:
                if name:
                    _admin(args.postgres, f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        results.append(result)
        print(f"{run:>4} {result.import_s:>9.2f} {result.ready_s:>8.2f} {result.stop_s:>7.2f}")
    print(
        f"summary: {engine} cold start of {WORKERS} workers, median "
        f"{statistics.median(r.ready_s for r in results):.2f} s to ready "
        f"({statistics.median(r.import_s for r in results):.2f} s of it importing the app), "
        f"{statistics.median(r.stop_s for r in results):.2f} s to stop"
    )


if __name__ == "__main__":
    main()
