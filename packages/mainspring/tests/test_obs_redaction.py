"""Redaction: the processor on its own, and a real process that is handed credentials."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from sample_apps.obs_server import ServedApp

from mainspring.observability.redaction import REDACTED, is_sensitive, redact, redact_event, scrub


def process(**event: Any) -> dict[str, Any]:
    return dict(redact_event(None, "info", event))


@pytest.mark.parametrize(
    "key",
    [
        "authorization",
        "Authorization",
        "COOKIE",
        "set-cookie",
        "token",
        "password",
        "secret",
        "api_key",
        "api-key",
        "apikey",
        "X-API-Key",
        "access_token",
        "client_secret",
        "new_password",
        "X-Auth-Token",
        b"authorization",
    ],
)
def test_sensitive_keys(key: str | bytes) -> None:
    assert is_sensitive(key)


@pytest.mark.parametrize("key", ["user", "status", "keyboard", "author", "path", b"host"])
def test_ordinary_keys(key: str | bytes) -> None:
    assert not is_sensitive(key)


def test_top_level_values_of_sensitive_keys_are_replaced() -> None:
    assert process(event="login", user="bob", password="hunter2", Api_Key="k") == {
        "event": "login",
        "user": "bob",
        "password": REDACTED,
        "Api_Key": REDACTED,
    }


def test_nested_dicts_and_lists_are_walked() -> None:
    event = process(
        event="call",
        request={"headers": {"Cookie": "sid=1", "Accept": "*/*"}, "body": [{"secret": "s"}]},
    )
    assert event["request"] == {
        "headers": {"Cookie": REDACTED, "Accept": "*/*"},
        "body": [{"secret": REDACTED}],
    }


def test_header_lists_of_pairs_are_redacted_by_name() -> None:
    asgi_headers = [(b"host", b"x"), (b"authorization", b"Basic dXNlcjpwYXNz")]
    httpx_style = [("X-Api-Key", "k-1"), ("Accept", "json")]
    event = process(event="headers", asgi=asgi_headers, lists=[["Set-Cookie", "a=b"]])
    event.update(process(event="more", pairs=httpx_style))
    assert event["asgi"] == [(b"host", b"x"), (b"authorization", REDACTED)]
    assert event["lists"] == [["Set-Cookie", REDACTED]]
    assert event["pairs"] == [("X-Api-Key", REDACTED), ("Accept", "json")]


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("sent Bearer eyJhbGciOi.eyJzdWIi.sig to api", "sent Bearer [redacted] to api"),
        ("header authorization: bearer abc-123", "header authorization: bearer [redacted]"),
        ("GET /cb?code=1&access_token=abc&x=2", "GET /cb?code=1&access_token=[redacted]&x=2"),
        ("api_key=k1 password=p2", "api_key=[redacted] password=[redacted]"),
        ("postgresql://app:s3cr3t@db:5432/x", "postgresql://app:[redacted]@db:5432/x"),
        ("nothing to hide here", "nothing to hide here"),
        ("http://host:8080/path", "http://host:8080/path"),
    ],
)
def test_free_text_is_scrubbed(text: str, expected: str) -> None:
    assert scrub(text) == expected
    assert process(event=text)["event"] == expected


def test_other_values_pass_through_and_input_is_not_mutated() -> None:
    original = {"headers": {"authorization": "Bearer t"}, "n": 3, "ok": True}
    copy = redact(original)
    assert copy == {"headers": {"authorization": REDACTED}, "n": 3, "ok": True}
    assert original["headers"] == {"authorization": "Bearer t"}


def test_structlogs_private_keys_are_left_alone() -> None:
    marker = object()
    assert process(event="x", _record=marker)["_record"] is marker


# End to end: the careless handler in tests/sample_apps/obs_app.py logs every header and the body.


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServedApp]:
    app = ServedApp("tests.sample_apps.obs_app:app", tmp_path_factory.mktemp("obs") / "app.log")
    try:
        yield app
    finally:
        app.stop()


def test_credentials_sent_to_a_real_server_never_reach_its_log(served: ServedApp) -> None:
    response = httpx.post(
        f"{served.url}/login",
        json={"username": "carol", "password": "correct-horse-battery"},
        headers={
            "Authorization": "Bearer tok-ABCDEF-123456",
            "Cookie": "session=cookie-987654",
            "X-Request-ID": "red-1",
        },
    )
    assert response.status_code == 200

    served.access_line("red-1")
    output = served.output()
    for secret in ("correct-horse-battery", "tok-ABCDEF-123456", "cookie-987654"):
        assert secret not in output
    (line,) = [x for x in served.lines_for("red-1") if x["event"] == "login attempt"]
    assert line["body"] == {"username": "carol", "password": REDACTED}
    assert line["headers"]["authorization"] == REDACTED
    assert line["headers"]["cookie"] == REDACTED
