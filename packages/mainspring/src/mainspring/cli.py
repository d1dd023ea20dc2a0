"""The `mainspring` command: `run` an app safely, read a running app's `status`.

Only what the options need is imported up front; the server, the HTTP client and the
app are imported by the command that uses them, so `mainspring --help` answers at once.
"""

from __future__ import annotations

import ipaddress
import json
import sys
from pathlib import Path
from typing import Annotated

import typer

from mainspring.server.exitcodes import StartError
from mainspring.server.logs import LogFormat, LogLevel, LogOptions
from mainspring.server.options import (
    DEFAULT_DRAIN_DELAY,
    DEFAULT_KEEPALIVE,
    DEFAULT_WATCHDOG_THRESHOLD,
    RunOptions,
)
from mainspring.urls import MAX_PORT

cli = typer.Typer(
    name="mainspring",
    help="Run FastAPI apps with the mainspring runtime, and inspect them.",
    add_completion=False,
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    # Plain help: rendering it with rich and markdown would take longer than the command.
    rich_markup_mode=None,
)


def fail(message: str, code: int) -> typer.Exit:
    typer.echo(f"mainspring: {message}", err=True)
    return typer.Exit(code)


def check_networks(values: list[str] | None) -> list[str]:
    for value in values or ():
        try:
            ipaddress.ip_network(value, strict=False)
        except ValueError:
            raise typer.BadParameter(f"{value!r} is not an IP address or CIDR") from None
    return values or []


@cli.command()
def run(
    app: Annotated[str, typer.Argument(help='The app as "module:attribute".')],
    host: Annotated[str, typer.Option(help="Address to listen on.")] = "127.0.0.1",
    port: Annotated[
        int, typer.Option(min=0, max=MAX_PORT, help="Port to listen on (0: any free port).")
    ] = 8000,
    workers: Annotated[
        int,
        typer.Option(min=1, envvar="WEB_CONCURRENCY", help="Worker processes (gunicorn when > 1)."),
    ] = 1,
    reload: Annotated[bool, typer.Option(help="Restart on code changes (development).")] = False,
    takeover: Annotated[
        bool, typer.Option(help="Stop a running instance of this app on the port first.")
    ] = False,
    graceful_timeout: Annotated[
        int,
        typer.Option(
            min=1, help="Seconds in-flight requests may finish after SIGTERM and the drain delay."
        ),
    ] = 10,
    drain_delay: Annotated[
        float,
        typer.Option(
            min=0,
            envvar="MAINSPRING_DRAIN_DELAY",
            help="Seconds to keep serving after SIGTERM while /ready answers 503, so load "
            "balancers stop sending first (SIGINT skips it).",
        ),
    ] = DEFAULT_DRAIN_DELAY,
    keepalive: Annotated[
        int,
        typer.Option(
            min=1,
            help="Seconds an idle keep-alive connection stays open (longer than a proxy's "
            "idle timeout for its upstream connections).",
        ),
    ] = DEFAULT_KEEPALIVE,
    max_inflight: Annotated[
        int | None,
        typer.Option(
            min=1,
            help="Requests one worker serves at once; more get 503 with Retry-After "
            "(default: no limit).",
            show_default=False,
        ),
    ] = None,
    log_format: Annotated[
        LogFormat | None,
        typer.Option(
            help="Log line format (default: $MAINSPRING_LOG_FORMAT, else json unless "
            "stderr is a terminal).",
            show_default=False,
        ),
    ] = None,
    log_level: Annotated[
        LogLevel | None,
        typer.Option(
            case_sensitive=False,
            help="Lowest level logged (default: $MAINSPRING_LOG_LEVEL, else info).",
            show_default=False,
        ),
    ] = None,
    access_log: Annotated[
        Path | None,
        typer.Option(
            dir_okay=False, help="Write access lines (JSON) to this file instead of stderr."
        ),
    ] = None,
    trusted_proxy: Annotated[
        list[str] | None,
        typer.Option(
            callback=check_networks,
            metavar="IP/CIDR",
            help="IP or CIDR of a reverse proxy whose X-Forwarded-For names the client "
            "(repeatable).",
        ),
    ] = None,
    metrics_port: Annotated[
        int | None,
        typer.Option(
            min=1,
            max=MAX_PORT,
            help="Also serve /metrics of all workers on 127.0.0.1:PORT, without authentication.",
        ),
    ] = None,
    watchdog_threshold: Annotated[
        float,
        typer.Option(
            min=0,
            help="Log the call that blocks the event loop longer than this many seconds (0: off).",
        ),
    ] = DEFAULT_WATCHDOG_THRESHOLD,
    ws_max_size: Annotated[
        int, typer.Option(min=1, help="Largest WebSocket frame accepted, in bytes.")
    ] = 1 << 20,
    ws_deflate: Annotated[
        bool,
        typer.Option(help="Compress WebSocket messages (costs CPU per client per message)."),
    ] = False,
) -> None:
    """Serve APP; drain on SIGTERM; exit 0, or 2 (bad app or option), 3 (critical
    failure), 4 (already running: use --takeover), 5 (port held by another program)."""
    if reload and workers > 1:
        raise fail("--reload and --workers cannot be used together", 2)
    if reload and metrics_port is not None:
        raise fail("--reload and --metrics-port cannot be used together", 2)
    options = RunOptions(
        app=app,
        host=host,
        port=port,
        workers=workers,
        reload=reload,
        takeover=takeover,
        graceful_timeout=graceful_timeout,
        drain_delay=drain_delay,
        keepalive=keepalive,
        max_inflight=max_inflight,
        logs=LogOptions(format=log_format, level=log_level, access_log=access_log),
        trusted_proxies=tuple(trusted_proxy or ()),
        metrics_port=metrics_port,
        watchdog_threshold=watchdog_threshold,
        ws_max_size=ws_max_size,
        ws_deflate=ws_deflate,
    )
    try:
        options.check()  # before the server is imported: a mistyped port fails at once
        from mainspring.server.runner import run as run_app

        code = run_app(options)
    except StartError as exc:
        raise fail(exc.message, exc.exit_code) from None
    raise typer.Exit(code)


@cli.command()
def status(
    url: Annotated[
        str | None,
        typer.Argument(
            help="The app's base URL (default: the app `mainspring run` serves on this host).",
            show_default=False,
        ),
    ] = None,
    token: Annotated[
        str | None,
        typer.Option(envvar="MAINSPRING_ADMIN_TOKEN", help="Admin token for /debug/status."),
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print the raw JSON.")] = False,
) -> None:
    """Show the services and resources of a running app."""
    from rich.console import Console

    from mainspring.server.status import StatusError, fetch_status, local_url, render_status

    try:
        body = fetch_status(url or local_url(), token)
    except StatusError as exc:
        raise fail(str(exc), 1) from None
    if as_json:
        typer.echo(json.dumps(body, indent=2))
    else:
        render_status(body, Console())


def main() -> None:
    """A usage error is one line on stderr and exit 2, like every other refusal of the runner."""
    try:
        code = cli(prog_name=cli.info.name, standalone_mode=False)
    except typer.TyperException as exc:  # typer's usage errors derive from it
        if type(exc).__name__ != "NoArgsIsHelpError":  # that one has printed the help already
            context = getattr(exc, "ctx", None)
            command = context.command_path if context is not None else cli.info.name
            typer.echo(f"{command}: {exc.format_message()}", err=True)
        code = exc.exit_code
    sys.exit(code if isinstance(code, int) else 0)


if __name__ == "__main__":
    main()
