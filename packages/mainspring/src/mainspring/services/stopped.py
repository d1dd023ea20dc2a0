"""`ServiceStopped`: how a sleep ends a service that was asked to stop."""

from __future__ import annotations


class ServiceStopped(BaseException):
    """Raised by :meth:`Service.sleep` once the service is asked to stop.

    The most natural loop, ``while True: ...; await self.sleep(900)``, never reads the
    stop flag; raising out of its sleep ends it at once instead of letting it spin. Like
    :class:`asyncio.CancelledError` it derives from BaseException, so an ``except
    Exception`` around the work does not swallow it, while ``finally`` blocks and context
    managers still run. The supervisor counts it as a clean stop.
    """
