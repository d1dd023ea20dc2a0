"""`markets serve --replay`: the app against a replay feed served by this very process, on a
database of its own.

No child process: the feed runs in a thread of the demo's process, on a socket bound before
the app starts (a free port unless `--replay-port` names one), and the app is pointed at that
socket. So a demo killed in any way, `kill -9` included, leaves nothing running, and the app
never polls whatever program happens to hold some fixed port.

Each run starts on a fresh SQLite database in a temporary directory, removed when the demo
stops. The replayed games are made up for the run (their ids and start times come from the
feed's start), so a previous run's games could only sit beside them, stuck wherever that run
stopped; and the demo never writes its made-up games into the database `DATABASE_URL` names.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path

import structlog

from mainspring.server.exitcodes import EXIT_PORT_UNAVAILABLE, StartError
from mainspring.server.ports import cannot_listen
from markets.espn.fake import serve_fake
from markets.espn.replay import ReplayFeed

log = structlog.get_logger("markets.demo")

FEED_HOST = "127.0.0.1"
DEMO_INTERVALS = {
    "SCHEDULE_INTERVAL": "30",
    "SCORES_LIVE_INTERVAL": "2",
    "SCORES_IDLE_INTERVAL": "10",
}
"""Poll fast enough to watch replayed games move (an environment setting wins)."""


@contextmanager
def replay_demo(*, feed_port: int, speed: float) -> Iterator[None]:
    """While the block runs: the feed serving in this process, a fresh database, and the
    environment that points the app (`markets.main:app`, loaded after this) at both.
    StartError (exit 5) when `feed_port` cannot be bound."""
    with ExitStack() as stack:
        feed = ReplayFeed(speed=speed)
        try:
            url = stack.enter_context(serve_fake(feed, FEED_HOST, feed_port))
        except OSError as exc:
            raise StartError(
                f"{cannot_listen(FEED_HOST, feed_port, exc, who='the replay feed')}; "
                "free that port or pass --replay-port 0 to use any free one",
                EXIT_PORT_UNAVAILABLE,
            ) from None
        directory = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="markets-demo-")))
        database = directory / "markets.db"
        os.environ.update(
            DATABASE_URL=f"sqlite:///{database}",
            ESPN_BASE_URL=url,
            NBA_AUTO_IMPORT_ENABLED="1",
            MLB_AUTO_IMPORT_ENABLED="1",
        )
        for name, value in DEMO_INTERVALS.items():
            os.environ.setdefault(name, value)
        first = min(game.start for game in feed.games)
        log.info(
            "replay feed serving",
            url=url,
            speed=speed,
            games=len(feed.games),
            first=first.isoformat(),
            database=str(database),
        )
        yield
