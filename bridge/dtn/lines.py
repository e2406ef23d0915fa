"""The lines a pass reads: the errors that end a pass at a line it will not take, and the patterns that cut a block
of text into the lines a text stream would yield."""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator

UNDECODABLE = re.compile("[\udc80-\udcff]")  # a byte that is not UTF-8, as errors='surrogateescape' decodes it
LINE = re.compile(r"[^\r\n]*(?:\r\n|\n|\r)")  # a line as a text stream opened with newline='' yields it
RECORD = re.compile(r"([^\r\n]*)(?:\r\n|\n|\r)")  # the same line without its end, as the pool checksum takes it


class UnreadableLine(Exception):
    """A line the reader will not take; raised by the line source, it ends the pass like a decoding error, with a
    defect of its own rule on that line. Adapters raise `LineTooLong`; the reader finds undecodable bytes itself
    (a stream opened with errors='surrogateescape' hands them over as lone surrogates)."""

    def __init__(self, rule: str, message: str) -> None:
        super().__init__(message)
        self.rule = rule
        self.message = message


class LineTooLong(UnreadableLine):
    """A line longer than the limit its source reads (see bridge.inbound.flowfile.open_flow_file)."""

    def __init__(self, limit: int) -> None:
        super().__init__("line-too-long", f"a line longer than {limit} bytes: the rest of the file is not read "
                         "(inbound.max_line_bytes)")


def undecodable(text: str) -> UnreadableLine | None:
    """The first byte that was not UTF-8 in `text` (one line), or None."""
    if text.isascii() or (bad := UNDECODABLE.search(text)) is None:  # str.isascii is a flag test
        return None
    return UnreadableLine("encoding", f"bytes that are not UTF-8 text (byte 0x{ord(bad[0]) - 0xDC00:02x} at "
                          f"character {bad.start() + 1} of the line)")


def decoded(lines: Iterable[str]) -> Iterator[str]:
    """`lines`, raising UnreadableLine at the first that holds undecodable bytes."""
    for line in lines:
        if not line.isascii() and (problem := undecodable(line)) is not None:
            raise problem
        yield line


def failing(error: UnicodeDecodeError | UnreadableLine) -> Iterator[str]:
    """The lines past a decoding error: raise it again when they are read, as the stream did."""
    raise error
    yield ""  # a generator


def one_line_each(block: str, lines: list[str], final: bool) -> bool:
    """True when each of `lines` is one line with its line end (the last may lack it at the end of the stream), as
    a stream opened with newline='' (or None, or '\\n') yields them; a block that is not is read line by line."""
    ends = block.count("\n")
    if "\r" in block:
        ends += block.count("\r") - block.count("\r\n")
        if "\r\n" in block and not lines[0].endswith("\n"):  # newline='\\r': CR LF split across two lines
            return False
    open_last = bool(lines) and lines[-1][-1:] not in ("\n", "\r")
    return ends == len(lines) - open_last and (final or not open_last)
