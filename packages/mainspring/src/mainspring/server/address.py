"""The URL a server listening on host:port is reached at, for log lines and the status CLI."""

from __future__ import annotations

import ipaddress

LOOPBACK_FOR = {"0.0.0.0": "127.0.0.1", "::": "::1", "": "127.0.0.1"}
"""A server on every interface is reached locally through loopback."""


def base_url(host: str, port: int) -> str:
    """``http://host:port``, with IPv6 addresses in brackets."""
    reached = LOOPBACK_FOR.get(host, host)
    try:
        if ipaddress.ip_address(reached).version == 6:
            reached = f"[{reached}]"
    except ValueError:
        pass  # a host name
    return f"http://{reached}:{port}"
