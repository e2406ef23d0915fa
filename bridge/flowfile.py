"""A DTN file on disk -> checked, then events: the two streaming passes every consumer of files uses.

The first pass checks the whole file (a defective file must be reported whole and publish nothing); the second pass
builds the events, now that the trailer (flow count, completion time) is known. Both passes hold one flow instance
at a time, so memory does not depend on the file's size.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import TextIO

from bridge.dtn.reader import FileParse, FlowFileReader
from bridge.events.envelope import Event, EventBuilder
from bridge.errors import FlowFileError


def open_flow_file(path: Path) -> TextIO:
    """Open a DTN file as text. Line endings are kept so that the reader accepts LF, CRLF and CR alike."""
    return open(path, encoding="utf-8", newline="")


def check_file(path: Path, reader: FlowFileReader) -> FileParse:
    """The first pass: read the whole file and collect every defect."""
    with open_flow_file(path) as stream:
        return reader.read(stream).check()


def file_events(path: Path, reader: FlowFileReader, checked: FileParse) -> Iterator[Event]:
    """The second pass over a file that `check_file` found valid: one event per flow instance."""
    if not checked.ok or checked.definition is None or checked.header is None or checked.trailer is None:
        raise FlowFileError(f"{path}: the file has defects; it cannot become events", checked.defects)
    build = EventBuilder(checked.definition, checked.header, checked.trailer, checked.flow_count)
    with open_flow_file(path) as stream:
        parse = reader.read(stream)
        for instance in parse:
            yield build(instance)
        if not parse.ok:  # the file changed between the passes
            raise FlowFileError(f"{path}: the file changed while it was read", parse.defects)
