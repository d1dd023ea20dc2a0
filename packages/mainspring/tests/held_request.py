"""A request to `tests.sample_apps.served_app`'s /hold, made in a thread of its own.

The app answers it once the test creates its release file, whichever worker it reached.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx
from process_support import EXIT_DEADLINE, STARTUP_DEADLINE, wait_for


class HeldRequest:
    def __init__(self, base_url: str, marker: Path) -> None:
        self.marker = marker
        self._outcome: list[httpx.Response | httpx.HTTPError] = []
        self._thread = threading.Thread(target=self._get, args=(base_url,))
        self._thread.start()

    def _get(self, base_url: str) -> None:
        try:
            response = httpx.get(
                f"{base_url}/hold", params={"marker": str(self.marker)}, timeout=EXIT_DEADLINE
            )
            self._outcome.append(response)
        except httpx.HTTPError as exc:
            self._outcome.append(exc)

    def wait_until_held(self) -> None:
        held = Path(f"{self.marker}.held")
        wait_for(held.exists, STARTUP_DEADLINE, "the request to reach the app")

    def release(self) -> None:
        Path(f"{self.marker}.release").touch()

    def close(self) -> None:
        self.release()
        self._thread.join(timeout=EXIT_DEADLINE)

    def response(self) -> httpx.Response:
        self._thread.join(timeout=EXIT_DEADLINE)
        assert self._outcome, "the held request did not end"
        (outcome,) = self._outcome
        if isinstance(outcome, httpx.HTTPError):
            raise AssertionError(f"the held request failed: {outcome!r}")
        return outcome


@contextmanager
def held_request(base_url: str, marker: Path) -> Iterator[HeldRequest]:
    """Start the request; on the way out, release it and wait for its thread, even when the
    test failed."""
    request = HeldRequest(base_url, marker)
    try:
        yield request
    finally:
        request.close()
