"""A DTN file on disk -> checked, then events: the two streaming passes every consumer of files uses.

The first pass checks the whole file (a defective file must be reported whole and publish nothing); the second pass
builds the events, now that the trailer (flow count, completion time) is known. Both passes hold one flow instance
at a time, so memory does not depend on the file's size. The second pass does not check items again; given the
file's SHA-256 from before the first pass, it proves instead that it read the very bytes the first pass checked.
"""

from __future__ import annotations

import functools
import hashlib
import io
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import BinaryIO, TextIO, cast

from bridge.dtn.formats import DEFAULT_MAX_LINE_BYTES
from bridge.dtn.lines import LineTooLong
from bridge.dtn.model import Defect
from bridge.dtn.reader import FileParse, FlowFileReader
from bridge.dtn.second_pass import data_by_blocks
from bridge.dtn.valid import ValidFile
from bridge.errors import FlowFileError
from bridge.events.envelope import Event, EventBuilder

OnRead = Callable[[int], None]  # told the count of each chunk of bytes read (a progress line)


def open_flow_file(path: Path, max_line_bytes: int | None = None, on_read: OnRead | None = None) -> TextIO:
    """Open a DTN file as text. Line endings are kept so that the reader accepts LF, CRLF and CR alike. A byte that
    is not UTF-8 is decoded as a lone surrogate, which the reader reports on its own line (a strict decoder fails on
    the whole block it decodes ahead, several lines early). With `max_line_bytes`, a longer line raises LineTooLong
    when it is reached, before it is held in memory (a Python layer under the text stream: twice the cost per line,
    so `check_file` takes it only for a file that has such a line). `on_read` is told each chunk's size."""
    if max_line_bytes is None and on_read is None:
        return open(path, encoding="utf-8", errors="surrogateescape", newline="")
    return _text(open(path, "rb", buffering=0), max_line_bytes, on_read)  # closed with the text


def _text(raw: io.RawIOBase, max_line_bytes: int | None, on_read: OnRead | None) -> io.TextIOWrapper:
    layer: io.RawIOBase = raw if on_read is None else _Counted(raw, on_read)
    if max_line_bytes is not None:
        layer = _LineCapped(layer, max_line_bytes)
    return io.TextIOWrapper(io.BufferedReader(layer, 1 << 16), encoding="utf-8", errors="surrogateescape",
                            newline="")


def check_file(path: Path, reader: FlowFileReader, max_line_bytes: int = DEFAULT_MAX_LINE_BYTES,
               on_read: OnRead | None = None) -> FileParse:
    """The first pass: read the whole file and collect every defect. A line longer than `max_line_bytes` ends the
    pass with a line-too-long defect on that line, and is never held in memory whole."""
    with open_flow_file(path, max_line_bytes if _has_long_line(path, max_line_bytes) else None, on_read) as stream:
        return reader.read(stream).check()


def check_stream(raw: BinaryIO, reader: FlowFileReader, max_line_bytes: int = DEFAULT_MAX_LINE_BYTES,
                 on_read: OnRead | None = None) -> FileParse:
    """`check_file` of a stream read once (stdin): every line is held to `max_line_bytes` as it is read, since the
    stream cannot be scanned first. The stream is left open."""
    return reader.read(_text(_Counted(raw, on_read, owned=False), max_line_bytes, None)).check()


def _has_long_line(path: Path, limit: int) -> bool:
    """Whether more than `limit` bytes follow a line end (or the start) anywhere in the file: a quick pass of a few
    C calls per `limit` bytes."""
    gaps = _LineGaps(limit)
    with open(path, "rb", buffering=0) as raw:
        return any(gaps.too_long(chunk) for chunk in iter(functools.partial(raw.read, limit), b""))


class _LineGaps:
    """Follows the bytes since the last line end across pieces of at most `limit` bytes (within one piece no gap
    between two line ends can pass the limit unseen)."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.since = 0

    def too_long(self, piece: bytes) -> bool:
        ends = [found for found in (piece.find(b"\n"), piece.find(b"\r")) if found >= 0]
        if not ends:
            self.since += len(piece)
            return self.since > self.limit
        if self.since + min(ends) > self.limit:
            return True
        self.since = len(piece) - 1 - max(piece.rfind(b"\n"), piece.rfind(b"\r"))
        return False


class _LineCapped(io.RawIOBase):
    """A raw file that raises LineTooLong as soon as more than `limit` bytes follow a line end: the layers above
    never hold more than about that much of one line."""

    def __init__(self, raw: io.RawIOBase, limit: int) -> None:
        self._raw = raw
        self._gaps = _LineGaps(limit)

    def readable(self) -> bool:
        return True

    def close(self) -> None:
        self._raw.close()
        super().close()

    def readinto(self, buffer: bytearray | memoryview) -> int:  # type: ignore[override]
        view = memoryview(buffer)[:self._gaps.limit]
        count = self._raw.readinto(view) or 0
        if self._gaps.too_long(view[:count].tobytes()):
            raise LineTooLong(self._gaps.limit)
        return count


class _Counted(io.RawIOBase):
    """A raw stream over a file or a buffered stream (stdin) that tells `on_read` the size of every chunk read.
    `owned=False`: closing it leaves the stream under it open."""

    def __init__(self, raw: io.RawIOBase | BinaryIO, on_read: OnRead | None, *, owned: bool = True) -> None:
        self._raw = cast(io.RawIOBase, raw)  # a BufferedReader (stdin.buffer) has readinto too
        self._on_read = on_read
        self._owned = owned

    def readable(self) -> bool:
        return True

    def close(self) -> None:
        if self._owned:
            self._raw.close()
        super().close()

    def readinto(self, buffer: bytearray | memoryview) -> int:  # type: ignore[override]
        count = self._raw.readinto(buffer) or 0
        if count and self._on_read is not None:
            self._on_read(count)
        return count


SHARE_INSTANCES = 64  # flow instances per share when several processes build one file's events (`file_events`)


def file_events(path: Path, reader: FlowFileReader, checked: FileParse | ValidFile,
                sha256: str | None = None, *, as_fragments: bool = False,
                share: tuple[int, int] = (0, 1), on_read: OnRead | None = None) -> Iterator[Event]:
    """The second pass over a file that `check_file` found valid: one event per flow instance.

    `sha256`, the file's digest taken before the first pass: the bytes read now are hashed too and must match, so a
    file changed between the passes raises FlowFileError after its last event instead of passing unnoticed.
    `as_fragments`: runs of leaf lines in `data` may come as `orjson.Fragment`s of their canonical JSON (see
    bridge/dtn/second_pass.py), several times faster, for callers that only serialize the events (the inbound build
    stage); code that reads `data` needs the default.
    `share` (part, parts): only the events of every parts-th run of SHARE_INSTANCES instances, from the part-th on;
    the others are read (and hashed) but not built. Several processes with one part each make a file's events
    together, in the same order when their runs are taken in turn. `on_read` is told each chunk's size.
    """
    if isinstance(checked, FileParse) and not checked.ok:
        raise FlowFileError(f"{path}: the file has defects; it cannot become events", checked.defects)
    valid = checked.valid() if isinstance(checked, FileParse) else checked
    build = EventBuilder(valid.definition, valid.header, valid.trailer, valid.flow_count)
    part, parts = share
    wanted = None if parts == 1 else lambda index: (index - 1) // SHARE_INSTANCES % parts == part
    blocks = as_fragments and valid.definition.group_by_code is not None
    with open(path, "rb", buffering=0) as raw:
        hashing = _HashingReader(raw if on_read is None else _Counted(raw, on_read))
        # By blocks, line ends are made '\n' as the stream reads (the line walk takes any line end as it comes).
        with io.TextIOWrapper(io.BufferedReader(hashing, 1 << 16), encoding="utf-8",
                              newline=None if blocks else "") as stream:
            try:
                if blocks:  # passes over the instances not wanted without making them
                    instances = data_by_blocks(stream, valid, wanted=wanted)
                else:
                    instances = (instance for instance in reader.read_valid(stream, valid, as_objects=True)
                                 if wanted is None or wanted(instance.index))
                for instance in instances:
                    yield build(instance)
                stream.read()  # what follows the trailer: nothing, in a file the first pass accepted
            except (FlowFileError, UnicodeDecodeError) as exc:
                defects = getattr(exc, "defects", [])
                raise FlowFileError(f"{path}: the file changed between the passes ({exc})", defects) from None
    if sha256 is not None and hashing.digest.hexdigest() != sha256:
        defect = Defect("file-changed", "the bytes differ from those the first pass checked (SHA-256)")
        raise FlowFileError(f"{path}: the file changed between the passes (SHA-256 differs)", [defect])


class _HashingReader(io.RawIOBase):
    """A raw stream that hashes every byte read through it."""

    def __init__(self, raw: io.RawIOBase) -> None:
        self._raw = raw
        self.digest = hashlib.sha256()

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: bytearray | memoryview) -> int:  # type: ignore[override]
        count = self._raw.readinto(buffer) or 0
        if count:
            self.digest.update(memoryview(buffer)[:count])
        return count
