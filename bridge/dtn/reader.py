"""Streaming reader: lines of a DTN file -> flow instances, with every defect collected as a value.

Memory does not grow with the file: one flow instance (a level-1 group and its subtree) is held at a time. The parse
reads the envelope (bridge/dtn/envelope.py) and walks the body line by line (bridge/dtn/walk.py), collecting defects
in a DefectLog (bridge/dtn/defects.py).

The validation pass over a text stream (`FileParse.check`, which every file goes through first) goes faster still: it
reads the stream in blocks of lines and matches whole runs of flow instances with one expression per run
(bridge/dtn/blocks.py). Only a span that does not match is read line by line, by the very walk that reads every line
otherwise, so the defects, counts and envelope are the same either way.
"""

from __future__ import annotations

import io
from collections.abc import Iterable, Iterator, Mapping
from typing import Final

from bridge.dtn.blocks import BLOCK_LINES, SPAN_CAP, BlockCheck
from bridge.dtn.checks import Severity
from bridge.dtn.checks import severities as resolve_severities
from bridge.dtn.checksum import PoolChecksum
from bridge.dtn.compiled import FlowDefinition
from bridge.dtn.defects import DefectLog
from bridge.dtn.definitions import DefinitionSet
from bridge.dtn.envelope import read_header, read_trailer
from bridge.dtn.lines import UnreadableLine, decoded
from bridge.dtn.model import Defect, FileHeader, FileTrailer, FlowInstance
from bridge.dtn.second_pass import placed_by_code
from bridge.dtn.valid import ValidFile
from bridge.dtn.walk import LineWalk
from bridge.errors import FlowFileError

DEFAULT_MAX_DEFECTS: Final = 100


class FileParse(Iterator[FlowInstance]):
    """One pass over one file. Iterate it for flow instances; once exhausted, `defects` is complete.

    The header is read when the parse is created, so `header` and `definition` are known before the first instance.
    """

    def __init__(self, reader: FlowFileReader, lines: Iterable[str]) -> None:
        self.strict = reader.strict
        self.max_defects = reader.max_defects
        # Only a text stream is read in blocks: its lines each end with one line end, as the block matching assumes
        self._blocks = reader.fast and isinstance(lines, io.TextIOBase)
        self._block_lines = reader.block_lines
        self._span_cap = reader.span_cap
        self._log = DefectLog(reader.max_defects, reader.severities)
        self.header: FileHeader | None = None
        self.definition: FlowDefinition | None = None
        self.trailer: FileTrailer | None = None
        self.group_count = 0
        self.flow_count = 0
        self.finished = False
        self._stream = lines if self._blocks else None  # read by blocks directly, checked a block at a time
        self._lines = decoded(lines)
        self._checksum = PoolChecksum()
        self._generator: Iterator[FlowInstance] = iter(())
        self._walk: LineWalk | None = None
        self._body_started = False
        first = self._next_line(1)
        if first is None:
            if not self._log.defects:  # not a line that could not be read: no line at all
                self._log.add("file-empty", "the file is empty: no ZHV header", line=1)
            self.finished = True
            return
        self.header, self.definition = read_header(first, reader.definitions, self._log)
        if self.definition is None or self.header is None:
            self.finished = True
            return
        self._checksum.add(first)
        self._walk = LineWalk(self.definition, self.header.terminated, self.strict, self._log,
                              self._checksum.add if self.header.layout != "ZHV" else None)
        self._generator = self._body(self._walk)

    # -- public ---------------------------------------------------------------------------------------------------

    @property
    def ok(self) -> bool:
        """True once the whole file was read without a defect."""
        return self.finished and not self._log.defects

    @property
    def defects(self) -> list[Defect]:
        return self._log.defects

    @property
    def defects_truncated(self) -> bool:
        return self._log.truncated

    @property
    def warnings(self) -> list[Defect]:
        """Defects of checks set to `warn`: reported, but the file stays valid."""
        return self._log.warnings

    @property
    def warnings_truncated(self) -> bool:
        return self._log.warnings_truncated

    @property
    def flow_reference(self) -> str | None:
        return self.header.flow_reference if self.header else None

    def __next__(self) -> FlowInstance:
        self._body_started = True
        return next(self._generator)

    def check(self) -> FileParse:
        """Read to the end, discarding the instances (a validation pass)."""
        walk = self._walk
        if (self._blocks and walk is not None and not self.finished and not self._body_started
                and walk.definition.boundary is not None):
            assert self._stream is not None
            self._generator = iter(())
            blocks = BlockCheck(walk, self._stream, self._lines, self._block_lines, self._span_cap,
                                self._log.severities)
            self._lines = blocks.run()
            if walk.undecodable:
                pass  # the walk met a line it would not take, and said so
            elif blocks.failure is not None and walk.trailer_line is None and not self._log.truncated:
                walk.unreadable(blocks.failure, walk.line_number + 1)
            else:
                for _ in self._end(walk):
                    pass
            self.finished = True
            return self
        for _ in self:
            pass
        return self

    def valid(self) -> ValidFile:
        """The file as the second pass needs it; FlowFileError when this pass found defects (or has not ended)."""
        if not self.ok or self.definition is None or self.header is None or self.trailer is None:
            raise FlowFileError("the first pass found defects: the file cannot be read as valid", self.defects)
        return ValidFile(self.definition, self.header, self.trailer, self.flow_count, self.group_count)

    def describe_defects(self) -> list[str]:
        """Every defect as one line, with a last line saying if more were not listed."""
        return self._describe(self.defects, self.defects_truncated, "defects")

    def describe_warnings(self) -> list[str]:
        """Every warning (a check set to `warn` that failed) as one line, like `describe_defects`."""
        return self._describe(self.warnings, self.warnings_truncated, "warnings")

    def _describe(self, defects: list[Defect], truncated: bool, what: str) -> list[str]:
        lines = [defect.describe(self.flow_reference) for defect in defects]
        if truncated:
            lines.append(f"{self.flow_reference or 'file'}: more {what} not listed (limit {self.max_defects})")
        return lines

    # -- reading --------------------------------------------------------------------------------------------------

    def _next_line(self, number: int) -> str | None:
        """Line `number`, without its line end; None at the end, or when it cannot be read (a defect, which ends
        the pass)."""
        try:
            raw = next(self._lines)
        except StopIteration:
            return None
        except (UnicodeDecodeError, UnreadableLine) as exc:
            self._log.unreadable(exc, number)
            return None
        return raw.rstrip("\r\n")

    def _body(self, walk: LineWalk) -> Iterator[FlowInstance]:
        yield from walk.walk(self._lines)
        if not walk.undecodable:
            yield from self._end(walk)
        self.finished = True

    def _end(self, walk: LineWalk) -> Iterator[FlowInstance]:
        """After the last body line: close the open groups, yield the last instance, read the trailer."""
        assert self.header is not None
        walk.close_open()
        self.group_count = walk.groups
        self.flow_count = walk.flows
        if self._log.truncated:
            return
        walk.close(walk.stack[0], self.strict)
        if walk.current is not None:
            yield walk.current
        if walk.trailer_line is None:
            self._log.add("trailer-missing", "the file ends without a ZPT trailer (truncated?)",
                          line=walk.line_number + 1)
            return
        self.trailer = read_trailer(walk.trailer_line, walk.line_number, self.header, self.group_count,
                                    self.flow_count, self._checksum, self._log)
        if (extra := self._next_line(walk.line_number + 1)) is not None:
            found = f"found {extra[:40]!r}" if extra.strip() else "found an empty line"
            self._log.add("after-trailer", f"nothing may follow the ZPT trailer, {found}",
                          line=walk.line_number + 1)


class FlowFileReader:
    """Reads DTN files against a set of flow definitions.

    `strict` enforces the DTC's ranges even where real files break them (see `lenient_range` in the definitions);
    `max_defects` bounds the report of a badly broken file; `checks` sets the severity of named checks
    (bridge/dtn/checks.py: `{"mpan_check_digit": "warn"}`), the defaults for those not named. ValueError names an
    unknown check or severity.
    """

    def __init__(self, definitions: DefinitionSet, *, strict: bool = False,
                 max_defects: int = DEFAULT_MAX_DEFECTS, fast: bool = True,
                 checks: Mapping[str, str] | None = None) -> None:
        self.definitions = definitions
        self.strict = strict
        self.max_defects = max_defects
        self.fast = fast  # False: the validation pass reads line by line too (to compare the two in tests)
        self.block_lines = BLOCK_LINES
        self.span_cap = SPAN_CAP
        self.severities: dict[str, Severity] = resolve_severities(checks)

    def read(self, lines: Iterable[str]) -> FileParse:
        """Start a pass over `lines` (str lines, with or without terminators)."""
        return FileParse(self, lines)

    def read_valid(self, lines: Iterable[str], checked: FileParse | ValidFile, *,
                   as_objects: bool = False) -> Iterator[FlowInstance]:
        """A second pass over a file that `checked` (its first pass) found valid, yielding its flow instances.

        Where the flow's group codes are all distinct, nothing is checked again: a line's values are its fields and
        its group's parent is the latest line of the parent group: faster than `read` (no item is matched again),
        and the same instances. Otherwise this is `read`. Either way a file that changed since the first pass
        raises FlowFileError rather than yield other instances.

        `as_objects`: where lines are placed by code, an instance may come as its event object (`data`) with a root
        that holds its own line only, which spares building the groups that the event is made of next.
        """
        valid = checked.valid() if isinstance(checked, FileParse) else checked
        if valid.definition.group_by_code is None:
            parse = self.read(lines)
            yield from parse
            if not parse.ok:
                raise FlowFileError("the file changed between the passes", parse.defects)
            return
        yield from placed_by_code(lines, valid.definition.group_by_code, valid.header.terminated, valid, as_objects)
