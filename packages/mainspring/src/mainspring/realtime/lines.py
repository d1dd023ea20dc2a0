"""Reading a JSON-lines file in pieces, from worker threads (every function here blocks).

Only whole lines come out, each with the byte offset just past it: where a reader that has
seen that line resumes. An unfinished last line waits for its newline.
"""

from __future__ import annotations

import json
import os
import stat
from dataclasses import dataclass, field
from pathlib import Path

CHUNK = 1 << 20
"""Bytes read at a time, and the longest line kept: a longer one is skipped."""

Line = tuple[int, bytes]
"""(offset just past the line, the line as JSON)."""


class Gone(Exception):
    """The path no longer names the file being read: replaced, removed or truncated."""


class Misaligned(Exception):
    """A resume offset that is not the start of a line."""


def open_regular(path: Path) -> int:
    """Open for reading, refusing a symlink (it could point out of the root) and anything
    but a regular file (O_NONBLOCK: a FIFO must not block the open)."""
    fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC)
    if not stat.S_ISREG(os.fstat(fd).st_mode):
        os.close(fd)
        raise OSError(f"{path.name} is not a regular file")
    return fd


def as_json(raw: bytes) -> bytes:
    """The line itself when it is JSON, else the line as a JSON string, since each line is
    embedded as JSON in the event; nothing is dropped."""
    try:
        # Strict: UTF-8 only (json.loads would take UTF-16 or a BOM from bytes), and no
        # NaN or Infinity, which Python writes but a browser's JSON.parse refuses.
        json.loads(raw.decode(), parse_constant=_refuse_constant)
    except ValueError:
        return json.dumps(raw.decode("utf-8", "replace")).encode()
    return raw


def _refuse_constant(name: str) -> object:
    raise ValueError(f"{name} is not JSON")


def split(chunk: bytes, start: int, *, complete: bool) -> tuple[list[Line], int]:
    """The whole lines of `chunk`, read at offset `start`, and the offset where its unfinished
    rest begins; with `complete` the rest is a line too. Blank lines take their bytes only."""
    lines: list[Line] = []
    begin = 0
    while (newline := chunk.find(b"\n", begin)) >= 0 or (complete and begin < len(chunk)):
        end = newline if newline >= 0 else len(chunk)
        # A stray CR would end the SSE data line early; outside strings JSON ignores it.
        raw = chunk[begin:end].replace(b"\r", b"")
        begin = end + 1 if newline >= 0 else end
        if raw.strip():
            lines.append((start + begin, as_json(raw)))
    return lines, start + begin


def read_range(path: Path, ino: int, start: int, limit: int) -> tuple[list[Line], int]:
    """Whole lines from `start` (a line start) towards `limit` (a line end), at most a
    chunk's worth; and where the next page starts. Opens the file by name each time, so it
    never shares a descriptor with the thread of the file's reader."""
    try:
        fd = open_regular(path)
    except FileNotFoundError:
        raise Gone from None
    try:
        if os.fstat(fd).st_ino != ino:
            raise Gone
        if start > 0 and os.pread(fd, 1, start - 1) != b"\n":
            raise Misaligned
        want = min(CHUNK, limit - start)
        chunk = os.pread(fd, want, start)
        if len(chunk) < want:
            raise Gone
        lines, after = split(chunk, start, complete=start + want == limit)
        if after == start and want == CHUNK:
            after = _skip_line(fd, start + CHUNK, limit)
        return lines, after
    finally:
        os.close(fd)


def _skip_line(fd: int, offset: int, limit: int) -> int:
    """Where the line running through `offset` ends (it is longer than a chunk)."""
    while offset < limit:
        chunk = os.pread(fd, min(CHUNK, limit - offset), offset)
        newline = chunk.find(b"\n")
        if newline >= 0:
            return offset + newline + 1
        if not chunk:
            break
        offset += len(chunk)
    return limit


@dataclass
class Batch:
    """What one read found."""

    lines: list[Line] = field(default_factory=list)
    position: int = 0
    """Where the last whole line ends: the next line starts here."""
    restart: bool = False
    """A file was (re)opened at `position`: a new file, or this one truncated."""
    missing: bool = False
    more: bool = False
    """Read again at once: the file holds more than one read takes."""
    skipped: bool = False
    """A line longer than CHUNK was dropped."""


class TailFile:
    """A reader's view of one file: its descriptor and where it stands. Only the reader's
    worker-thread calls touch it, one at a time."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.fd: int | None = None
        self.ino = 0
        self.position = 0
        self.offset = 0
        """Where the next read starts; past `position` only while skipping a long line."""
        self.skipping = False

    def read(self, final: bool) -> Batch:
        """The lines appended since the last read. `final`: the writer is done, so an
        unterminated last line is whole."""
        try:
            info: os.stat_result | None = os.stat(self.path)
        except FileNotFoundError:
            info = None
        if self.fd is not None:
            if info is not None and info.st_ino == self.ino:
                if info.st_size < self.offset:  # truncated: start again
                    return self._start(info.st_size)
                return self._next(final)
            # Replaced or removed: what the old file still holds comes first.
            batch = self._next(final=False)
            if batch.lines or batch.more:
                batch.more = True
                return batch
            self.close()
        if info is None:
            return Batch(position=self.position, missing=True)
        self.fd = open_regular(self.path)
        info = os.fstat(self.fd)
        self.ino = info.st_ino
        return self._start(info.st_size)

    def _start(self, size: int) -> Batch:
        """Stand at the start of the last line: followers page through what is before."""
        assert self.fd is not None
        base = max(0, size - CHUNK)
        tail = os.pread(self.fd, size - base, base)
        cut = tail.rfind(b"\n")
        self.skipping = cut < 0 and base > 0
        self.position = base + cut + 1 if cut >= 0 else (size if self.skipping else 0)
        self.offset = self.position
        return Batch(position=self.position, restart=True, more=True)

    def _next(self, final: bool) -> Batch:
        assert self.fd is not None
        chunk = os.pread(self.fd, CHUNK, self.offset)
        more = len(chunk) == CHUNK
        if self.skipping:
            newline = chunk.find(b"\n")
            if newline < 0:
                self.offset += len(chunk)
                return Batch(position=self.position, more=more)
            self.skipping = False
            self.offset += newline + 1
            chunk = chunk[newline + 1 :]
        lines, self.position = split(chunk, self.offset, complete=final and not more)
        skipped = self.position == self.offset and len(chunk) == CHUNK
        self.skipping = skipped
        self.offset = self.offset + CHUNK if skipped else self.position
        return Batch(lines, self.position, more=more, skipped=skipped)

    def close(self) -> None:
        if self.fd is not None:
            os.close(self.fd)
            self.fd = None
