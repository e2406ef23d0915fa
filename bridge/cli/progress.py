"""A progress line on stderr for long commands, and the command line's input files (`-` is stdin).

The progress line is ours (~60 lines) rather than tqdm or rich: the commands need one line of counts redrawn in
place, only on a terminal, a few times a second; a library would add a dependency to every install for that, and
its defaults (bars sized to the terminal, a monitor thread) are what we would turn off.
"""

from __future__ import annotations

import argparse
import contextlib
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import IO, Self, TextIO

STDIN = "-"
_REDRAW_SECONDS = 0.25  # at most four redraws a second: a terminal kept busy slows the work it reports
_COPY_CHUNK = 1 << 20


class Progress:
    """`label: 42% 120.0 MB of 286.1 MB` (or a count) on one stderr line, redrawn in place; silent when stderr is
    not a terminal (a pipe, a log file, cron), so scripts and logs never see it. Work done within `delay` seconds
    shows nothing."""

    def __init__(self, label: str, total: int | None = None, *, unit: str = "bytes",
                 stream: TextIO | None = None, enabled: bool | None = None, delay: float = 0.5) -> None:
        self.stream = stream if stream is not None else sys.stderr
        self.enabled = self.stream.isatty() if enabled is None else enabled
        self.label, self.total, self.unit = label, total, unit
        self.done = 0
        self.drawn = 0  # how many times the line was drawn (tests hold the rate to this)
        self._next = time.monotonic() + delay
        self._width = 0

    def advance(self, amount: int) -> None:
        """Count `amount` more (bytes read, items done) and redraw if the last redraw is old enough."""
        self.update(self.done + amount)

    def update(self, done: int, detail: str = "") -> None:
        """Set the count; redraw at most every quarter second."""
        self.done = done
        if not self.enabled:
            return
        now = time.monotonic()
        if now < self._next:
            return
        self._next = now + _REDRAW_SECONDS
        text = f"{self.label}: {self._amount()}{f', {detail}' if detail else ''}"
        self.stream.write("\r" + text.ljust(self._width))
        self.stream.flush()
        self._width = len(text)
        self.drawn += 1

    def close(self) -> None:
        """Clear the line, so what the command prints next starts on a clean line."""
        if self.enabled and self._width:
            self.stream.write("\r" + " " * self._width + "\r")
            self.stream.flush()
            self._width = 0

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _amount(self) -> str:
        show = _megabytes if self.unit == "bytes" else str
        if self.total:
            return f"{100 * self.done // self.total}% {show(self.done)} of {show(self.total)}"
        return show(self.done) + ("" if self.unit == "bytes" else f" {self.unit}")


def _megabytes(count: int) -> str:
    return f"{count / 1e6:.1f} MB"


def input_file(text: str) -> Path:
    """argparse type of an input file: `-` (stdin), or a file that exists. A missing one is a usage error (exit 2,
    with the usage line), not a failure of the filesystem."""
    path = Path(text)
    if text == STDIN or path.is_file():
        return path
    if path.is_dir():
        raise argparse.ArgumentTypeError(f"{text}: is a folder, not a file")
    if not path.exists():
        raise argparse.ArgumentTypeError(f"{text}: no such file")
    return path  # a device or a FIFO: read as it is


def is_stdin(path: Path | str) -> bool:
    return str(path) == STDIN


@contextlib.contextmanager
def spooled_stdin(label: str = "reading stdin") -> Iterator[Path]:
    """Stdin copied to a temporary file, for the commands that read a file twice (check, then build events):
    memory stays one chunk whatever the input's size; the copy is deleted on leaving."""
    with tempfile.NamedTemporaryFile(prefix="dtn-bridge-stdin-", suffix=".tmp") as spool:
        copy(sys.stdin.buffer, spool, Progress(label))
        spool.flush()
        yield Path(spool.name)


def copy(source: IO[bytes], target: IO[bytes], progress: Progress) -> None:
    """Copy in 1 MiB chunks, counting them on the progress line."""
    with progress:
        while chunk := source.read(_COPY_CHUNK):
            target.write(chunk)
            progress.advance(len(chunk))
