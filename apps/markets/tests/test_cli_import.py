"""`markets import` and `markets db upgrade` from the terminal, against the local fake ESPN."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path

import pytest
from typer.testing import CliRunner

from markets.cli import cli
from markets.espn.fake import serve_fake
from markets.espn.fixtures import RecordedFeed


@pytest.fixture(scope="module")
def feed_url() -> Iterator[str]:
    with serve_fake(RecordedFeed(fill=True)) as url:
        yield url


@pytest.fixture
def env(tmp_path: Path, feed_url: str) -> dict[str, str]:
    return {
        "DATABASE_URL": f"sqlite:///{tmp_path / 'db' / 'markets.db'}",
        "ESPN_BASE_URL": feed_url,
    }


def summary(output: str) -> dict[str, int]:
    match = re.search(
        r"(\d+)/(\d+) days, (\d+) games seen, (\d+) markets opened, (\d+) errors", output
    )
    assert match, output
    done, total, seen, opened, errors = map(int, match.groups())
    return {"done": done, "total": total, "seen": seen, "opened": opened, "errors": errors}


def test_imports_with_a_progress_bar_and_never_twice(env: dict[str, str]) -> None:
    runner = CliRunner()
    args = ["import", "--league", "nba", "--start", "2024-01-01", "--end", "2024-01-31"]
    first = runner.invoke(cli, args, env=env)
    assert first.exit_code == 0, first.output
    assert "31/31 days" in first.output  # the progress bar, at its end
    assert "━" in first.output
    counts = summary(first.output)
    assert counts["done"] == counts["total"] == 31
    assert counts["opened"] == counts["seen"] > 31
    assert counts["errors"] == 0

    again = runner.invoke(
        cli, ["import", "--league", "nba", "--start", "2024-01-10", "--end", "2024-01-20"], env=env
    )
    assert again.exit_code == 0, again.output
    assert summary(again.output)["opened"] == 0


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--league", "nfl", "--start", "2024-01-01", "--end", "2024-01-02"], "unknown league"),
        (["--league", "nba", "--start", "2024-01-02", "--end", "2024-01-01"], "is after end"),
        (["--league", "nba", "--start", "2023-01-01", "--end", "2024-06-01"], "at most 366"),
        (["--league", "nba", "--start", "Jan 1", "--end", "2024-01-01"], "Jan 1"),
    ],
)
def test_bad_ranges_are_refused_before_anything_runs(
    env: dict[str, str], args: list[str], message: str
) -> None:
    result = CliRunner().invoke(cli, ["import", *args], env=env)
    assert result.exit_code == 2
    assert message in result.output
    assert not Path(env["DATABASE_URL"].removeprefix("sqlite:///")).exists()


def test_db_upgrade_creates_the_schema(env: dict[str, str]) -> None:
    result = CliRunner().invoke(cli, ["db", "upgrade"], env=env)
    assert result.exit_code == 0, result.output
    assert "up to date" in result.output
    assert Path(env["DATABASE_URL"].removeprefix("sqlite:///")).exists()
