"""The `markets` command: migrate, import a range of days, replay a feed, serve the app."""

from __future__ import annotations

from contextlib import AbstractContextManager
from datetime import date, datetime
from typing import TYPE_CHECKING, Annotated, NoReturn

import typer

# Everything else is imported by the command that needs it: `markets --help` answers at once,
# instead of loading FastAPI, SQLAlchemy and Alembic first.
if TYPE_CHECKING:
    from rich.progress import Progress, TaskID

    from mainspring.resources import Database
    from mainspring.server.exitcodes import StartError
    from markets.db.models import ImportRun
    from markets.settings import MarketsSettings

cli = typer.Typer(help=__doc__, no_args_is_help=True, add_completion=False, rich_markup_mode=None)
db_cli = typer.Typer(help="The database.", no_args_is_help=True)
cli.add_typer(db_cli, name="db")

Day = Annotated[datetime, typer.Option(formats=["%Y-%m-%d"], show_default=False)]


def settings() -> MarketsSettings:
    from mainspring import ConfigError, load_settings
    from markets.settings import MarketsSettings

    try:
        return load_settings(MarketsSettings)
    except ConfigError as exc:
        typer.echo(str(exc), err=True)
        raise typer.Exit(2) from None


@db_cli.command("upgrade")
def db_upgrade() -> None:
    """Apply every pending migration to DATABASE_URL."""
    from markets.db.session import upgrade

    upgrade(settings().database_url)
    typer.echo("database is up to date")


@cli.command("import")
def import_days(
    league: Annotated[str, typer.Option(help="nba or mlb.", show_default=False)],
    start: Day,
    end: Day,
) -> None:
    """Import a league's games from START to END (inclusive) from ESPN_BASE_URL."""
    import asyncio

    from rich.console import Console
    from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

    from mainspring.observability import configure_logging
    from markets.db.models import ImportState
    from markets.importer import check_league, check_range

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
    from mainspring.resources import Database, HttpClient
    from markets.db.session import upgrade_async
    from markets.espn.client import EspnClient
    from markets.importer import create_import, run_import

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
    from markets.db.models import ImportRun

    async with db.session() as session:
        run_ = await session.get(ImportRun, run_id)
    assert run_ is not None
    return run_


@cli.command("replay-feed")
def replay_feed(
    host: Annotated[str, typer.Option(help="Address to listen on.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="Port to listen on (0: any free port).")] = 8765,
    speed: Annotated[
        float, typer.Option(min=0.01, help="Game seconds per real second (60: a minute a second).")
    ] = 60.0,
) -> None:
    """Serve recorded ESPN scoreboards as games that start, go live and finish now."""
    from mainspring.observability import configure_logging
    from mainspring.server.exitcodes import EXIT_PORT_UNAVAILABLE
    from mainspring.server.ports import cannot_listen
    from markets.espn.fake import run_replay_feed

    configure_logging()
    try:
        run_replay_feed(host=host, port=port, speed=speed)
    except OSError as exc:
        typer.echo(cannot_listen(host, port, exc, who="the replay feed"), err=True)
        raise typer.Exit(EXIT_PORT_UNAVAILABLE) from None


@cli.command()
def serve(
    host: Annotated[str, typer.Option(help="Address to listen on.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="Port to listen on.")] = 8000,
    replay: Annotated[
        bool,
        typer.Option(
            help="The demo: also serve a replay feed in this process and poll it, with demo "
            "intervals, on a fresh database of its own."
        ),
    ] = False,
    replay_port: Annotated[
        int, typer.Option(help="Port of the replay feed (0: any free port).")
    ] = 0,
    speed: Annotated[float, typer.Option(min=0.01, help="Speed of the replay feed.")] = 60.0,
) -> None:
    """Serve the app with mainspring's runner; with --replay, against a local replay feed."""
    import functools

    from mainspring.server.exitcodes import StartError
    from mainspring.server.runner import RunOptions, run

    options = RunOptions(app="markets.main:app", host=host, port=port)
    setup = functools.partial(_replay_demo, feed_port=replay_port, speed=speed) if replay else None
    try:
        code = run(options, setup=setup)
    except StartError as exc:
        _refuse(exc)
    raise typer.Exit(code)


def _replay_demo(*, feed_port: int, speed: float) -> AbstractContextManager[None]:
    # Imported by the runner's setup, where an early Ctrl-C is deferred like the app's import.
    from markets.demo import replay_demo

    return replay_demo(feed_port=feed_port, speed=speed)


def _refuse(error: StartError) -> NoReturn:
    typer.echo(error.message, err=True)
    raise typer.Exit(error.exit_code)


def main() -> None:
    cli()


if __name__ == "__main__":
    main()
