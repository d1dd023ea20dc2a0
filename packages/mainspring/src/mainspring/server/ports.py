"""Bind the listening socket, and on EADDRINUSE find out from /proc who holds the port."""

from __future__ import annotations

import ipaddress
import os
import socket
from dataclasses import dataclass
from pathlib import Path

PROC = Path("/proc")
TCP_LISTEN = "0A"
BACKLOG = 2048

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address


def resolve(host: str, port: int) -> tuple[socket.AddressFamily, tuple[str, int]]:
    """The family and address to bind for `host`, as getaddrinfo sees it."""
    family, _, _, _, sockaddr = socket.getaddrinfo(
        host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE
    )[0]
    return family, (str(sockaddr[0]), int(sockaddr[1]))


def bind(host: str, port: int) -> socket.socket:
    """A listening socket on host:port. SO_REUSEADDR only: a live listener keeps the port."""
    family, address = resolve(host, port)
    sock = socket.socket(family, socket.SOCK_STREAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(address)
        sock.listen(BACKLOG)
    except OSError:
        sock.close()
        raise
    sock.set_inheritable(True)
    return sock


def cannot_listen(host: str, port: int, error: OSError, who: str | None = None) -> str:
    """The message for a port that cannot be bound, e.g. ``the replay feed cannot listen on
    127.0.0.1:8765 (Address already in use)``."""
    subject = f"{who} cannot" if who else "cannot"
    return f"{subject} listen on {host}:{port} ({error.strerror})"


@dataclass(frozen=True)
class ProcessInfo:
    pid: int
    ppid: int
    state: str
    start_time: int
    """Clock ticks after boot; tells a process apart from a later one with the same pid."""
    cmdline: str


def process_info(pid: int) -> ProcessInfo | None:
    """What /proc says about `pid`, or None when it is gone."""
    try:
        stat = (PROC / str(pid) / "stat").read_text()
        raw_cmdline = (PROC / str(pid) / "cmdline").read_bytes()
    except (FileNotFoundError, ProcessLookupError):
        return None
    # The command name in parentheses may hold spaces; the fields after it do not.
    fields = stat[stat.rindex(")") + 2 :].split()
    # One line, for messages: arguments may themselves hold newlines (python -c ...).
    cmdline = " ".join(raw_cmdline.replace(b"\0", b" ").decode(errors="replace").split())
    return ProcessInfo(
        pid=pid, ppid=int(fields[1]), state=fields[0], start_time=int(fields[19]), cmdline=cmdline
    )


def decode_address(hex_address: str) -> IPAddress:
    """Decode /proc/net/tcp{,6} notation: 32-bit words in host (little-endian) byte order."""
    raw = bytes.fromhex(hex_address)
    words = b"".join(raw[i : i + 4][::-1] for i in range(0, len(raw), 4))
    address = ipaddress.ip_address(words)
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped:
        return address.ipv4_mapped
    return address


def _conflicts(listening: IPAddress, wanted: IPAddress) -> bool:
    return listening == wanted or listening.is_unspecified or wanted.is_unspecified


def listening_inodes(host_ip: str, port: int, proc: Path = PROC) -> set[int]:
    """Inodes of LISTEN sockets on `port` whose address overlaps `host_ip`."""
    wanted = ipaddress.ip_address(host_ip)
    inodes: set[int] = set()
    for table in ("tcp", "tcp6"):
        try:
            lines = (proc / "net" / table).read_text().splitlines()[1:]
        except FileNotFoundError:
            continue
        for line in lines:
            fields = line.split()
            local, state, inode = fields[1], fields[3], int(fields[9])
            hex_address, hex_port = local.split(":")
            if state != TCP_LISTEN or int(hex_port, 16) != port:
                continue
            if _conflicts(decode_address(hex_address), wanted):
                inodes.add(inode)
    return inodes


def pids_with_sockets(inodes: set[int]) -> set[int]:
    """Processes holding any of these socket inodes; processes we may not read are skipped."""
    links = {f"socket:[{inode}]" for inode in inodes}
    pids: set[int] = set()
    for entry in PROC.iterdir():
        if not entry.name.isdigit():
            continue
        try:
            fds = list((entry / "fd").iterdir())
        except (PermissionError, FileNotFoundError):
            continue
        for fd in fds:
            try:
                if os.readlink(fd) in links:
                    pids.add(int(entry.name))
                    break
            except OSError:
                continue
    return pids


def port_holders(host_ip: str, port: int) -> list[ProcessInfo]:
    """The processes listening on host_ip:port; empty when /proc does not let us tell."""
    pids = pids_with_sockets(listening_inodes(host_ip, port)) if port else set()
    infos = (process_info(pid) for pid in sorted(pids))
    return [info for info in infos if info is not None]
