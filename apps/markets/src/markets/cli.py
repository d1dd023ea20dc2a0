"""The `markets` command: migrate, import a range of days, replay a feed, serve the app."""

from __future__ import annotations

import asyncio
import os
import socket
import subprocess
import sys
import time
from datetime import date, datetime
from typing import Annotated

import typer
from rich.console import Console
from rich.progress import BarColumn, Progress, TaskID, TextColumn, TimeElapsedColumn

from mainspring import ConfigError, load_settings
from mainspring.observability import configure_logging
from mainspring.resources import Database, HttpClient
from mainspring.server.exitcodes import StartError
from mainspring.server.runner import RunOptions, run
from markets.db.models import ImportRun, ImportState
from markets.db.session import upgrade, upgrade_async
from markets.espn.client import EspnClient
from markets.espn.fake import run_replay_feed
from markets.importer import check_league, check_range, create_import, run_import
from markets.settings import MarketsSettings

cli = typer.Typer(help=__doc__, no_args_is_help=True, add_completion=False)
db_cli = typer.Typer(help="The database.", no_args_is_help=True)
cli.add_typer(db_cli, name="db")

DEMO_INTERVALS = {
    "SCHEDULE_INTERVAL": "30",
    "SCORES_LIVE_INTERVAL": "2",
    "SCORES_IDLE_INTERVAL": "10",
}
"""Poll fast enough to watch replayed games move (an environment setting wins)."""
FEED_START_TIMEOUT = 20.0
FEED_STOP_TIMEOUT = 5.0

Day = Annotated[datetime, typer.Option(formats=["%Y-%m-%d"], show_default=False)]


def settings() -> MarketsSettings:
    try:
        return load_settings(MarketsSettings)
    except ConfigError as exc:
        typer.echo(str(exc), err=True)
        raise typer.Exit(2) from None


@db_cli.command("upgrade")
def db_upgrade() -> None:
    """Apply every pending migration to DATABASE_URL."""
    upgrade(settings().database_url)
    typer.echo("database is up to date")


@cli.command("import")
def import_days(
    league: Annotated[str, typer.Option(help="nba or mlb.", show_default=False)],
    start: Day,
    end: Day,
) -> None:
    """Import a league's games from START to END (inclusive) from ESPN_BASE_URL."""
    try:
        check_league(league)
        check_range(start.date(), end.date())
    except ValueError as exc:
        raise typer.BadParameter(str(exc)) from None
    config = settings()
    configure_logging(json=False, level="warning")
    console = Console(stderr=True)
    with Progress(
        TextColumn(f"[bold]{league}[/] {start:%Y-%m-%d}..{end:%Y-%m-%d}"),
        BarColumn(),
        TextColumn("{task.completed}/{task.total} days"),
        TextColumn("{task.fields[games]} games, {task.fields[opened]} new markets"),
        TimeElapsedColumn(),
        console=console,
    ) as progress:
        task = progress.add_task("import", total=(end - start).days + 1, games=0, opened=0)
        run_ = asyncio.run(_import(config, league, start.date(), end.date(), progress, task))
    for day, error in sorted(run_.errors.items()):
        console.print(f"[red]{day}[/]: {error}")
    typer.echo(
        f"import {run_.id} {run_.state.value}: {run_.dates_done}/{run_.dates_total} days, "
        f"{run_.games_seen} games seen, {run_.markets_opened} markets opened, "
        f"{len(run_.errors)} errors"
    )
    if run_.state is not ImportState.DONE:
        raise typer.Exit(1)


async def _import(
    config: MarketsSettings, league: str, start: date, end: date, progress: Progress, task: TaskID
) -> ImportRun:
    def show(run_: ImportRun) -> None:
        progress.update(
            task, completed=run_.dates_done, games=run_.games_seen, opened=run_.markets_opened
        )

    await upgrade_async(config.database_url)
    db, http = Database(config.database_url), HttpClient(timeout=10)
    await db.open()
    try:
        await http.open()
        try:
            espn = EspnClient(http.client, config.espn_base_url)
            run_id = await create_import(db, league, start, end, requested_by="cli")
            try:
                return await run_import(
                    db, espn, run_id, concurrency=config.import_concurrency, on_progress=show
                )
            except Exception:
                return await _load_run(db, run_id)
        finally:
            await http.close()
    finally:
        await db.close()


async def _load_run(db: Database, run_id: int) -> ImportRun:
    async with db.session() as session:
        run_ = await session.get(ImportRun, run_id)
    assert run_ is not None
    return run_


@cli.command("replay-feed")
def replay_feed(
    host: Annotated[str, typer.Option(help="Address to listen on.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="Port to listen on.")] = 8765,
    speed: Annotated[
        float, typer.Option(min=0.01, help="Game seconds per real second (60: a minute a second).")
    ] = 60.0,
) -> None:
    """Serve recorded ESPN scoreboards as games that start, go live and finish now."""
    run_replay_feed(host=host, port=port, speed=speed)


@cli.command()
def serve(
    host: Annotated[str, typer.Option(help="Address to listen on.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="Port to listen on.")] = 8000,
    replay: Annotated[
        bool, typer.Option(help="Also run the replay feed and poll it, with demo intervals.")
    ] = False,
    replay_port: Annotated[int, typer.Option(help="Port of the replay feed.")] = 8765,
    speed: Annotated[float, typer.Option(min=0.01, help="Speed of the replay feed.")] = 60.0,
) -> None:
    """Serve the app with mainspring's runner; with --replay, against a local replay feed."""
    feed = _start_feed(replay_port, speed) if replay else None
    try:
        if feed is not None:
            os.environ["ESPN_BASE_URL"] = f"http://127.0.0.1:{replay_port}"
            os.environ["NBA_AUTO_IMPORT_ENABLED"] = "1"
            os.environ["MLB_AUTO_IMPORT_ENABLED"] = "1"
            for name, value in DEMO_INTERVALS.items():
                os.environ.setdefault(name, value)
        try:
            code = run(RunOptions(app="markets.main:app", host=host, port=port))
        except StartError as exc:
            typer.echo(exc.message, err=True)
            raise typer.Exit(exc.exit_code) from None
    finally:
        if feed is not None:
            _stop(feed)
    raise typer.Exit(code)


def _start_feed(port: int, speed: float) -> subprocess.Popen[bytes]:
    """`markets replay-feed` as a child process, once it accepts connections."""
    command = [sys.executable, "-m", "markets.cli", "replay-feed", "--port", str(port)]
    feed = subprocess.Popen([*command, "--speed", str(speed)])
    deadline = time.monotonic() + FEED_START_TIMEOUT
    while not _accepts(port):
        if feed.poll() is not None or time.monotonic() > deadline:
            _stop(feed)
            typer.echo(f"the replay feed did not start on port {port}", err=True)
            raise typer.Exit(1)
        time.sleep(0.1)
    return feed


def _accepts(port: int) -> bool:
    with socket.socket() as probe:
        probe.settimeout(0.5)
        return probe.connect_ex(("127.0.0.1", port)) == 0


def _stop(process: subprocess.Popen[bytes]) -> None:
    if process.poll() is None:
        process.terminate()
        try:
            process.wait(FEED_STOP_TIMEOUT)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def main() -> None:
    cli()


if __name__ == "__main__":
    main()
