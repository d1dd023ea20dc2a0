"""What can go wrong when talking to ESPN, as the pollers need to tell it apart."""

from __future__ import annotations


class EspnError(Exception):
    """Base of every ESPN failure; a poller catches this, logs it and backs off."""


class EspnPayloadError(EspnError):
    """The response is not a scoreboard at all (invalid JSON, not an object, no `events`).

    Retrying the same request would get the same answer, so the client does not retry it.
    """


class EspnRequestError(EspnError):
    """ESPN did not answer usefully: a 4xx, or 5xx/timeouts/429s until the retries ran out."""

    def __init__(self, message: str, *, status: int | None, attempts: int) -> None:
        super().__init__(message)
        self.status = status
        """The last HTTP status, or None when the last attempt got no response."""
        self.attempts = attempts
