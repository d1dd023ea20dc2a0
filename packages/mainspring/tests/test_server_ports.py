"""Finding who listens on a port from /proc, and binding without stealing a live port."""

from __future__ import annotations

import errno
import ipaddress
import os
import socket
from pathlib import Path

import pytest

from mainspring.server import ports

HEADER = "  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt  uid  inode\n"


def entry(local: str, state: str, inode: int) -> str:
    # Fields as in /proc/net/tcp: the inode is the tenth.
    return f"0: {local} 00000000:0000 {state} 00000000:00000000 00:00000000 00000000 0 0 {inode}\n"


@pytest.mark.parametrize(
    ("hex_address", "expected"),
    [
        ("0100007F", "127.0.0.1"),
        ("00000000", "0.0.0.0"),
        ("00000000000000000000000001000000", "::1"),
        ("0000000000000000FFFF00000100007F", "127.0.0.1"),
    ],
)
def test_decode_address(hex_address: str, expected: str) -> None:
    assert ports.decode_address(hex_address) == ipaddress.ip_address(expected)


def test_listening_inodes_match_port_state_and_overlapping_address(tmp_path: Path) -> None:
    (tmp_path / "net").mkdir()
    (tmp_path / "net" / "tcp").write_text(
        HEADER
        + entry("0100007F:1F90", "0A", 11)  # 127.0.0.1:8080 LISTEN
        + entry("00000000:1F90", "0A", 12)  # 0.0.0.0:8080 LISTEN
        + entry("0200007F:1F90", "0A", 13)  # 127.0.0.2:8080: another address
        + entry("0100007F:1F91", "0A", 14)  # 127.0.0.1:8081: another port
        + entry("0100007F:1F90", "01", 15)  # an established connection
    )
    (tmp_path / "net" / "tcp6").write_text(
        HEADER + entry("00000000000000000000000000000000:1F90", "0A", 16)  # [::]:8080
    )

    assert ports.listening_inodes("127.0.0.1", 8080, proc=tmp_path) == {11, 12, 16}
    assert ports.listening_inodes("0.0.0.0", 8080, proc=tmp_path) == {11, 12, 13, 16}


def test_port_holders_finds_this_process() -> None:
    sock = ports.bind("127.0.0.1", 0)
    try:
        port = sock.getsockname()[1]
        holders = ports.port_holders("127.0.0.1", port)
    finally:
        sock.close()
    assert [holder.pid for holder in holders] == [os.getpid()]
    assert holders[0].ppid == os.getppid()
    assert "\n" not in holders[0].cmdline


def test_bind_refuses_a_port_with_a_live_listener() -> None:
    with socket.socket() as other:
        other.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        other.bind(("127.0.0.1", 0))
        other.listen()
        with pytest.raises(OSError, match="in use") as caught:
            ports.bind("127.0.0.1", other.getsockname()[1])
    assert caught.value.errno == errno.EADDRINUSE


def test_process_info_is_none_for_a_missing_process() -> None:
    assert ports.process_info(2**22 + 1) is None
