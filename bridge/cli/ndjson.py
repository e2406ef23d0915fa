"""Reading NDJSON events (one CloudEvent per line), as `parse` writes them, for the commands that take events."""

from __future__ import annotations

import contextlib
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import orjson

from bridge.errors import EventError


def read_events(source: str | Path, name: str | Path | None = None) -> Iterator[tuple[int, dict[str, Any]]]:
    """(line number, event) for each non-blank line of a file, or of stdin for '-'; streams line by line. `name`:
    what errors call the source (default: the source)."""
    name = source if name is None else name
    with contextlib.nullcontext(sys.stdin.buffer) if str(source) == "-" else open(source, "rb") as stream:
        for number, line in enumerate(stream, 1):
            if not line.strip():
                continue
            try:
                event = orjson.loads(line)
            except orjson.JSONDecodeError as exc:
                raise EventError(f"{name} line {number}: not JSON ({exc})") from exc
            if not isinstance(event, dict):
                raise EventError(f"{name} line {number}: not a JSON object")
            yield number, event
