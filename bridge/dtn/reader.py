"""Streaming reader: lines of a DTN file -> flow instances, with every defect collected as a value.

Memory does not grow with the file: one flow instance (a level-1 group and its subtree) is held at a time. Lines are
checked whole against a compiled expression per group; only a line that fails is split and checked item by item, so
that its defects can be located precisely. Nesting follows the DTC: a group belongs to the nearest open group that may
contain it, and siblings appear in definition order.

The validation pass over a text stream (`FileParse.check`, which every file goes through first) goes faster still: it
reads the stream in blocks of lines and matches whole runs of flow instances with one expression per run (see
`FlowDefinition.compile_instances`). Only a span that does not match is read line by line, by the very code that reads
every line otherwise, so the defects, counts and envelope are the same either way.
"""

from __future__ import annotations

import io
import re
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass
from itertools import chain, islice
from typing import Final

from bridge.dtn.checks import (
    MPAN_CHECK_DIGIT,
    SETTLEMENT_PERIODS,
    Clock,
    Severity,
    mpan_problem,
    mpan_valid,
    periods_problem,
    rule,
)
from bridge.dtn.checks import severities as resolve_severities
from bridge.dtn.checksum import PoolChecksum
from bridge.dtn.definitions import DefinitionSet, FlowDefinition, GroupDefinition
from bridge.dtn.formats import LogicalFormat, quoted
from bridge.dtn.model import Defect, FileHeader, FileTrailer, FlowInstance, GroupInstance, Layout
from bridge.dtn.second_pass import placed_by_code
from bridge.errors import FlowDefinitionError, FlowFileError

DEFAULT_MAX_DEFECTS: Final = 100
_GROUP_COUNT_MODULUS: Final = 10**10  # J1067: only the 10 least significant digits are written
_COUNT_DIGITS: Final = 18  # no count in a trailer is longer
_DATETIME = LogicalFormat.parse("DATETIME")
BLOCK_LINES: Final = 8192  # lines read from the stream at a time by the validation pass
SPAN_CAP: Final = 8 << 20  # characters held waiting for the end of one flow instance before reading it line by line
_UNDECODABLE = re.compile("[\udc80-\udcff]")  # a byte that is not UTF-8, as errors='surrogateescape' decodes it
_LINE = re.compile(r"[^\r\n]*(?:\r\n|\n|\r)")  # a line as a text stream opened with newline='' yields it
_FIELD = re.compile(r"[^|\r\n]*")  # a line's first field, up to its first '|' or line end
_RECORD = re.compile(r"([^\r\n]*)(?:\r\n|\n|\r)")  # the same line without its end, as the pool checksum takes it


class UnreadableLine(Exception):
    """A line the reader will not take; raised by the line source, it ends the pass like a decoding error, with a
    defect of its own rule on that line. Adapters raise `LineTooLong`; the reader finds undecodable bytes itself
    (a stream opened with errors='surrogateescape' hands them over as lone surrogates)."""

    def __init__(self, rule: str, message: str) -> None:
        super().__init__(message)
        self.rule = rule
        self.message = message


class LineTooLong(UnreadableLine):
    """A line longer than the limit its source reads (see bridge.flowfile.open_flow_file)."""

    def __init__(self, limit: int) -> None:
        super().__init__("line-too-long", f"a line longer than {limit} bytes: the rest of the file is not read "
                         "(inbound.max_line_bytes)")


def _undecodable(text: str) -> UnreadableLine | None:
    """The first byte that was not UTF-8 in `text` (one line), or None."""
    if text.isascii() or (bad := _UNDECODABLE.search(text)) is None:  # str.isascii is a flag test
        return None
    return UnreadableLine("encoding", f"bytes that are not UTF-8 text (byte 0x{ord(bad[0]) - 0xDC00:02x} at "
                          f"character {bad.start() + 1} of the line)")


def _decoded(lines: Iterable[str]) -> Iterator[str]:
    """`lines`, raising UnreadableLine at the first that holds undecodable bytes."""
    for line in lines:
        if not line.isascii() and (problem := _undecodable(line)) is not None:
            raise problem
        yield line


class _Frame:
    """An open group that may still receive children."""

    __slots__ = ("counts", "cursor", "definition", "instance")

    def __init__(self, definition: GroupDefinition, instance: GroupInstance | None) -> None:
        self.definition = definition
        self.instance = instance
        self.cursor = -1  # index of the last child definition matched: siblings only move forward
        self.counts: dict[GroupDefinition, int] = {}


@dataclass(frozen=True, slots=True)
class ValidFile:
    """What the first pass learned of a valid file: all the second pass needs, and small enough to send to a worker
    process (`portable`: the definition by its reference)."""

    definition: FlowDefinition
    header: FileHeader
    trailer: FileTrailer
    flow_count: int
    group_count: int

    def portable(self) -> tuple[str, FileHeader, FileTrailer, int, int]:
        return (self.definition.reference, self.header, self.trailer, self.flow_count, self.group_count)

    @classmethod
    def from_portable(cls, portable: tuple[str, FileHeader, FileTrailer, int, int],
                      definitions: DefinitionSet) -> ValidFile:
        reference, header, trailer, flow_count, group_count = portable
        return cls(definitions[reference], header, trailer, flow_count, group_count)


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
        self._severities = reader.severities
        self.defects: list[Defect] = []
        self.defects_truncated = False
        self.warnings: list[Defect] = []  # defects of checks set to `warn`: reported, but the file stays valid
        self.warnings_truncated = False
        self.header: FileHeader | None = None
        self.definition: FlowDefinition | None = None
        self.trailer: FileTrailer | None = None
        self.group_count = 0
        self.flow_count = 0
        self.finished = False
        self._stream = lines if self._blocks else None  # read by blocks directly, checked a block at a time
        self._lines = _decoded(lines)
        self._line_number = 0
        self._checksum = PoolChecksum()
        self._generator: Iterator[FlowInstance] = iter(())
        # the state of the body, kept between the blocks of the validation pass
        self._stack: list[_Frame] = []
        self._limits: dict[GroupDefinition, int | None] = {}
        self._current: FlowInstance | None = None
        self._groups = 0
        self._flows = 0
        self._trailer_line: str | None = None
        self._undecodable = False
        self._body_started = False
        first = self._next_line()
        if first is None:
            if not self._undecodable:
                self._defect("file-empty", "the file is empty: no ZHV header", line=1)
            self.finished = True
            return
        self._read_header(first, reader.definitions)
        if self.definition is None:
            self.finished = True
            return
        assert self.definition.root is not None and self.header is not None
        self._stack = [_Frame(self.definition.root, None)]
        self._limits = {group: group.range_for(self.strict).maximum for group in self.definition.groups}
        self._generator = self._body()

    # -- public ---------------------------------------------------------------------------------------------------

    @property
    def ok(self) -> bool:
        """True once the whole file was read without a defect."""
        return self.finished and not self.defects

    @property
    def flow_reference(self) -> str | None:
        return self.header.flow_reference if self.header else None

    def __next__(self) -> FlowInstance:
        self._body_started = True
        return next(self._generator)

    def check(self) -> FileParse:
        """Read to the end, discarding the instances (a validation pass)."""
        if (self._blocks and not self.finished and not self._body_started and self.definition is not None
                and self.definition.boundary is not None):
            self._generator = iter(())
            self._check_blocks()
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

    # -- lines and defects ----------------------------------------------------------------------------------------

    def _next_line(self) -> str | None:
        try:
            raw = next(self._lines)
        except StopIteration:
            return None
        except (UnicodeDecodeError, UnreadableLine) as exc:
            self._unreadable(exc, self._line_number + 1)
            return None
        self._line_number += 1
        return raw.rstrip("\r\n")

    def _unreadable(self, error: UnicodeDecodeError | UnreadableLine, line: int) -> None:
        """The line that ends the pass early: nothing after it is read or judged."""
        self._undecodable = True
        if isinstance(error, UnreadableLine):
            self._defect(error.rule, error.message, line=line)
        else:
            self._defect("encoding", f"bytes that are not UTF-8 text ({error.reason})", line=line)

    def _defect(self, rule: str, message: str, **where: object) -> None:
        if len(self.defects) >= self.max_defects:
            self.defects_truncated = True
            return
        self.defects.append(Defect(rule, message, **where))  # type: ignore[arg-type]

    def _failed_check(self, name: str, message: str, **where: object) -> None:
        """A named check failed: a defect under `error`, a warning under `warn`."""
        if self._severities[name] == "error":
            self._defect(rule(name), message, **where)
        elif len(self.warnings) < self.max_defects:
            self.warnings.append(Defect(rule(name), message, **where))  # type: ignore[arg-type]
        else:
            self.warnings_truncated = True

    def _check_items(self, group: GroupDefinition, values: tuple[str, ...], well_formed: bool) -> None:
        """The named checks of a line's items (the only one: mpan_check_digit). An item whose format is already
        reported wrong is not judged again."""
        if self._severities[MPAN_CHECK_DIGIT] == "off":
            return
        for item in group.item_checks:
            text = values[item.position - 1]
            if not text or mpan_valid(text) or (not well_formed and item.problem(text)):
                continue
            self._failed_check(MPAN_CHECK_DIGIT, mpan_problem(text) or "", line=self._line_number,
                               group=group.code, item=item.position, item_key=item.key, item_format=item.format.text)

    # -- header ---------------------------------------------------------------------------------------------------

    def _read_header(self, line: str, definitions: DefinitionSet) -> None:
        record = line[:3]
        if record not in ("ZHV", "ZHD"):
            self._defect("header-missing", f"the file does not start with a ZHV (or pool ZHD) header: {line[:40]!r}",
                         line=1)
            return
        terminated = line.endswith("|")
        fields = (line[:-1] if terminated else line).split("|")
        layout: Layout
        if record == "ZHV":
            layout = "ZHV"
        else:
            layout = "ZHD-ZHV" if len(fields) == 12 else "ZHD-POOL"
        if layout == "ZHD-POOL":
            if len(fields) != 7:
                self._defect("header-fields", f"a pool ZHD header has 6 fields, found {len(fields) - 1}", line=1,
                             group=record)
                return
            _, reference, from_role, from_id, to_role, to_id, created = fields
            header = FileHeader(layout, "", reference, from_role, from_id, to_role, to_id, created,
                                terminated=terminated)
        else:
            if len(fields) != 12:
                extra = f" (extra: {_shown(fields[12:])})" if len(fields) > 12 else ""
                self._defect("header-fields", f"a {record} header has 11 fields, found {len(fields) - 1}{extra}",
                             line=1, group=record)
                return
            header = FileHeader(layout, *fields[1:12], terminated=terminated)  # type: ignore[arg-type]
        self.header = header
        self._check_header(header, record)
        where = {"line": 1, "group": record, "item": 2 if layout != "ZHD-POOL" else 1, "item_key": "flow_reference"}
        try:
            definition = definitions.get(header.flow_reference)
        except FlowDefinitionError as exc:  # definitions compile on first use: a broken one fails its files only
            self._defect("flow-definition-invalid", f"the definition of {header.flow_reference} is invalid: {exc}",
                         **where)
            return
        if definition is None:
            self._defect("flow-unknown", f"flow {quoted(header.flow_reference)} has no definition in flow_definitions/ "
                         "(no such flow version in the imported DTC catalogue; import a newer one with "
                         "`dtn-bridge definitions import`)", **where)
            return
        self.definition = definition
        self._checksum.add(line)

    def _check_header(self, header: FileHeader, record: str) -> None:
        pool = header.layout == "ZHD-POOL"
        checks: list[tuple[int, str, str, int, int]] = [  # position, key, value, min length, max length
            (1, "file_identifier", header.file_identifier, 0 if header.layout != "ZHV" else 1, 10),
            (2, "from_role", header.from_role, 1, 1),
            (3, "from_participant", header.from_participant, 1, 4),
            (4, "to_role", header.to_role, 1, 1),
            (5, "to_participant", header.to_participant, 1, 4),
            (8, "sending_application", header.sending_application, 0, 5),
            (9, "receiving_application", header.receiving_application, 0, 5),
            (10, "broadcast", header.broadcast, 0, 1),
            (11, "test_data_flag", header.test_data_flag, 0 if pool else 1, 4),
        ]
        for position, key, value, low, high in checks:
            if pool and position in (1, 8, 9, 10, 11):
                continue
            if not low <= len(value) <= high:
                size = f"{low}" if low == high else f"{low} to {high}"
                self._defect("header-field", f"{quoted(value)} must be {size} characters", line=1, group=record,
                             item=position - (1 if pool else 0), item_key=key)
        reference_position = 1 if pool else 2
        if not (len(header.flow_reference) == 8 and header.flow_reference[5:].isdigit()):
            self._defect("header-field", f"{quoted(header.flow_reference)} is not a flow reference and version "
                         "like D0010002", line=1, group=record, item=reference_position, item_key="flow_reference")
        problem = _DATETIME.check(header.created)
        if problem:
            self._defect("header-field", problem, line=1, group=record, item=reference_position + 5,
                         item_key="created", item_format="DATETIME")

    # -- body -----------------------------------------------------------------------------------------------------

    def _body(self) -> Iterator[FlowInstance]:
        yield from self._walk(self._lines)
        if not self._undecodable:
            yield from self._end()
        self.finished = True

    def _walk(self, lines: Iterable[str]) -> Iterator[FlowInstance]:
        """The hot loop: kept flat, with locals only, because it runs once per line of every file.

        Reads body lines until the ZPT trailer (kept in `_trailer_line`), the end of `lines` or the defect limit; the
        state it leaves in `self` lets the validation pass hand it any span of lines.
        """
        assert self.definition is not None and self.header is not None
        strict = self.strict
        limits = self._limits
        terminated = self.header.terminated
        # Only pool files are held to a checksum: for ZHV files the DTC is silent on the algorithm (dtc-format.md
        # 1.3), so a ZHV checksum is carried verbatim into the events rather than judged.
        checksum_add = self._checksum.add if self.header.layout != "ZHV" else None
        stack = self._stack
        current = self._current
        flow_count = self._flows
        group_count = self._groups
        line_number = self._line_number
        new_instance = GroupInstance
        try:
            for raw in lines:
                line_number += 1
                self._line_number = line_number
                line = raw.rstrip("\r\n")
                code = line[:3]
                if code == "ZPT":
                    self._trailer_line = line
                    break
                if line[3:4] not in ("|", ""):  # "0260|..." is no group 026: the whole first field is the code
                    code = line.split("|", 1)[0][:40]
                group_count += 1
                if checksum_add is not None:
                    checksum_add(line)
                group = None
                depth = len(stack) - 1
                while depth >= 0:  # the nearest open group that may take this code next (DTC order)
                    frame = stack[depth]
                    candidates = frame.definition.child_codes.get(code)
                    if candidates is not None:
                        for candidate in candidates:
                            index = candidate.index
                            if index > frame.cursor:
                                frame.cursor = index
                                frame.counts[candidate] = 1
                                group = candidate
                                break
                            if index == frame.cursor:
                                count = frame.counts[candidate]
                                limit = limits[candidate]
                                if limit is None or count < limit:
                                    frame.counts[candidate] = count + 1
                                    group = candidate
                                    break
                        if group is not None:
                            break
                    depth -= 1
                if group is None:
                    self._misplaced(stack, code)
                    if self.defects_truncated:
                        break
                    continue
                if terminated and line[-1:] != "|":  # in pool files a final '|' just ends an empty last item
                    self._defect("line-terminator", "the line must end with '|', as the header does",
                                 line=line_number, group=code)
                match = group.line_patterns[terminated].fullmatch(line)  # calendar-exact: no day to re-check
                values = match.groups() if match is not None else self._check_line(group, line, terminated)
                if group.item_checks:
                    self._check_items(group, values, match is not None)
                instance = new_instance(group, values, line_number, [] if group.children else None)
                while len(stack) > depth + 1:
                    self._close(stack.pop(), strict)
                parent = stack[-1].instance
                if parent is None:
                    if current is not None:
                        yield current
                    flow_count += 1
                    current = FlowInstance(flow_count, instance)
                else:
                    parent.children.append(instance)
                if group.children:
                    stack.append(_Frame(group, instance))
                if self.defects_truncated:
                    break
        except (UnicodeDecodeError, UnreadableLine) as exc:
            self._unreadable(exc, line_number + 1)
        finally:
            self._current = current
            self._flows = flow_count
            self._groups = group_count

    def _end(self) -> Iterator[FlowInstance]:
        """After the last body line: close the open groups, yield the last instance, read the trailer."""
        stack = self._stack
        strict = self.strict
        while len(stack) > 1:
            self._close(stack.pop(), strict)
        self.group_count = self._groups
        self.flow_count = self._flows
        if self.defects_truncated:
            return
        self._close(stack[0], strict)
        if self._current is not None:
            yield self._current
        if self._trailer_line is None:
            self._defect("trailer-missing", "the file ends without a ZPT trailer (truncated?)",
                         line=self._line_number + 1)
        else:
            self._read_trailer(self._trailer_line)
            if (extra := self._next_line()) is not None:
                found = f"found {extra[:40]!r}" if extra.strip() else "found an empty line"
                self._defect("after-trailer", f"nothing may follow the ZPT trailer, {found}", line=self._line_number)

    # -- the validation pass, by blocks ----------------------------------------------------------------------------

    def _check_blocks(self) -> None:
        """The validation pass at C speed: read the stream in blocks of lines and match whole runs of flow instances.

        Each span from one level-1 line to the next (or to ZPT) either matches its group's instance expression and
        is counted as the line walk would count it (lines, flows, the root's order and counts), or is handed to
        `_walk`, which says exactly what is wrong. Blocks end at the last instance boundary they hold; the rest waits
        for the next block, up to `span_cap` characters, past which the instance is read line by line.
        """
        definition = self.definition
        assert definition is not None and definition.boundary is not None and self.header is not None
        stream = self._lines
        assert self._stream is not None
        source = self._stream  # the stream `stream` reads, without a Python call per line: checked by the block
        strict = self.strict
        limits = self._limits
        style = (self.header.terminated, strict)
        patterns = {group: group.instance_patterns.get(style) for group in definition.level1}
        boundary = definition.boundary
        after_lf = ["\n" + code for code in definition.boundary_codes]
        after_cr = ["\r" + code for code in definition.boundary_codes]
        checksum_add = self._checksum.add if self.header.layout != "ZHV" else None
        stack = self._stack
        root = stack[0]
        level1 = root.definition.child_codes
        block_lines = self._block_lines
        span_checks = _span_checks(definition, self._severities, strict)
        carry = ""  # whole lines from an instance boundary on, waiting for the next block
        failure: UnicodeDecodeError | UnreadableLine | None = None
        while True:
            lines: list[str] = []
            try:
                lines.extend(islice(source, block_lines))  # keeps the lines read before a decoding error
            except (UnicodeDecodeError, UnreadableLine) as exc:
                failure = exc
            block = "".join(lines)
            if not block.isascii() and _UNDECODABLE.search(block):  # rare: find the line, keep those before it
                index, failure = next((n, problem) for n, line in enumerate(lines)
                                      if (problem := _undecodable(line)) is not None)
                del lines[index:]
                block = "".join(lines)
            final = failure is not None or len(lines) < block_lines
            rest: Iterator[str] = _failing(failure) if failure is not None else stream
            if not _one_line_each(block, lines, final) or (carry[-1:] == "\r" and block[:1] == "\n"):
                walking = chain(_LINE.findall(carry), lines)  # not split as expected: read this block line by line
                carry = ""
                self._walk_all(walking)
                if self._trailer_line is not None:
                    self._lines = chain(walking, rest)
                if self._trailer_line is not None or self.defects_truncated or self._undecodable or final:
                    break
                continue
            text = carry + block
            if final and text[-1:] not in ("\n", "\r", ""):
                text += "\n"  # the last line may lack its line end; the walk strips it all the same
            crs = "\r" in text
            if final:
                limit = len(text)
            else:  # the start of the last line that opens an instance (or is ZPT): all before it is complete
                limit = max(text.rfind(end) for end in after_lf)
                if crs:
                    limit = max(limit, *(text.rfind(end) for end in after_cr))
                limit += 1  # not found: 0
            pos = 0
            while True:
                if text.startswith("ZPT", pos):  # the trailer: the walk reads it, and `_end` what follows
                    self._lines = chain(_LINE.findall(text, pos), rest)
                    self._walk_all(self._lines)
                    break
                if pos >= limit:
                    break
                code = text[pos:pos + 3]
                group = None
                for candidate in level1.get(code, ()):  # as the walk's root frame would place this line
                    if candidate.index > root.cursor or (candidate.index == root.cursor and (
                            limits[candidate] is None or root.counts[candidate] < limits[candidate])):
                        group = candidate
                        break
                pattern = patterns.get(group) if group is not None else None
                match = pattern.match(text, pos, limit) if pattern is not None else None
                if match is not None:
                    assert group is not None
                    end = match.end()
                    flows = 1
                    if limits[group] is None:  # a run: count its level-1 lines
                        flows += text.count("\n" + code, pos, end)
                        flows += text.count("\r" + code, pos, end) if crs else 0
                    count = flows + (root.counts[group] if group.index == root.cursor else 0)
                    following = _code_at(text, end)
                    if following and following != "ZPT" and not _takes(level1.get(following, ()), group, count,
                                                                       limits):
                        # the walk would refuse the next line and keep this instance's groups open for the lines
                        # after it, so the last instance must be walked for its open groups to exist
                        last = text.rfind("\n" + code, pos, end)
                        if crs:
                            last = max(last, text.rfind("\r" + code, pos, end))
                        end = pos if last < 0 else last + 1
                        flows -= 1
                    if flows:
                        checks = span_checks.get(group)
                        if checks and not all(check(text, pos, end, crs) for check in checks):
                            self._walk_all(iter(_LINE.findall(text, pos, end)))  # a check failed: say where
                            if self.defects_truncated:
                                break
                            pos = end
                            continue
                        if len(stack) > 1:  # the walk closes the groups of the previous instance here
                            while len(stack) > 1:
                                self._close(stack.pop(), strict)
                            if self.defects_truncated:  # ... and stops right after this instance's first line
                                first = _RECORD.match(text, pos)
                                assert first is not None
                                self._count_run(group, 1, 1, checksum_add, [first[1]])
                                break
                        lines_in = text.count("\n", pos, end)
                        if crs:
                            lines_in += text.count("\r", pos, end) - text.count("\r\n", pos, end)
                        self._count_run(group, flows, lines_in, checksum_add,
                                        _RECORD.findall(text, pos, end) if checksum_add is not None else [])
                        pos = end
                        continue
                found = boundary.search(text, pos)
                end = found.end() if found is not None and found.end() <= limit else limit
                self._walk_all(iter(_LINE.findall(text, pos, end)))
                if self.defects_truncated:
                    break
                pos = end
            if self._trailer_line is not None or self.defects_truncated or self._undecodable or final:
                break
            carry = text[pos:]
            if len(carry) > self._span_cap:
                self._walk_all(iter(_LINE.findall(carry)))  # one huge instance: its lines so far, one by one
                carry = ""
                if self.defects_truncated:
                    break
        if self._undecodable:
            pass  # the walk met a line it would not take, and said so
        elif failure is not None and self._trailer_line is None and not self.defects_truncated:
            self._unreadable(failure, self._line_number + 1)
        else:
            for _ in self._end():
                pass
        self.finished = True

    def _walk_all(self, lines: Iterable[str]) -> None:
        for _ in self._walk(lines):
            pass

    def _count_run(self, group: GroupDefinition, flows: int, lines: int, checksum_add: Callable[[str], None] | None,
                   records: list[str]) -> None:
        """Count `flows` valid instances of `group` spanning `lines` lines, as the walk would have."""
        root = self._stack[0]
        if group.index > root.cursor:
            root.cursor = group.index
            root.counts[group] = flows
        else:
            root.counts[group] += flows
        self._flows += flows
        self._groups += lines
        self._line_number += lines
        self._current = None  # the validation pass discards instances
        if checksum_add is not None:
            for record in records:
                checksum_add(record)

    def _misplaced(self, stack: list[_Frame], code: str) -> None:
        assert self.definition is not None
        line = self._line_number
        if not code.strip() and len(code) < 3:
            self._defect("blank-line", "an empty line", line=line)
            return
        known = [group for group in self.definition.groups if group.code == code]
        if not known:
            self._defect("group-unknown", f"{code!r} is not a group of {self.definition.reference}", line=line,
                         group=code)
            return
        expected = known[0]
        open_codes = [frame.definition.code for frame in stack[1:]]
        parent_code = expected.parent.code if expected.parent and expected.parent.level else None
        if parent_code and parent_code not in open_codes:
            message = f"group {code} must be inside a group {parent_code}"
        else:
            message = (f"group {code} may not appear here: out of DTC order, or more often than its range "
                       f"{expected.range_for(self.strict).text} allows")
        self._defect("group-unexpected", message, line=line, group=code)

    def _close(self, frame: _Frame, strict: bool) -> None:
        """Check that every child group occurred as often as its range allows."""
        for child in frame.definition.children:
            count = frame.counts.get(child, 0)
            cardinality = child.range_for(strict)
            if not cardinality.admits(count):
                owner = (f"group {frame.definition.code} (line {frame.instance.line})" if frame.instance
                         else "the file")
                self._defect("group-range", f"{owner} must contain {cardinality.text} group {child.code} "
                             f"({child.name}), found {count}", line=frame.instance.line if frame.instance else None,
                             group=frame.definition.code if frame.instance else child.code)
            elif child.periods is not None and frame.instance is not None:
                self._check_periods(frame.instance, child, count)

    def _check_periods(self, parent: GroupInstance, child: GroupDefinition, count: int) -> None:
        """settlement_periods: `count` instances of the period group `child` under `parent` fit its date."""
        check = child.periods
        assert check is not None
        if self._severities[SETTLEMENT_PERIODS] == "off" or check.implied_by(child.range_for(self.strict)):
            return
        item = check.date_item
        text = parent.values[item.position - 1]
        if not text or item.problem(text):  # a wrong date is reported as such
            return
        problem = periods_problem(text, count, check.clock)
        if problem is not None:
            self._failed_check(SETTLEMENT_PERIODS, f"group {child.code} ({child.name}): {problem}", line=parent.line,
                               group=parent.definition.code, item=item.position, item_key=item.key,
                               item_format=item.format.text)

    def _check_line(self, group: GroupDefinition, line: str, terminated: bool) -> tuple[str, ...]:
        """The slow path: say exactly which items are wrong."""
        body = line[:-1] if line.endswith("|") and terminated else line
        fields = body.split("|")[1:]
        expected = len(group.items)
        if len(fields) != expected:
            extra = f": extra {_shown(fields[expected:])}" if len(fields) > expected else ""
            self._defect("item-count", f"expected {expected} items, found {len(fields)}{extra}",
                         line=self._line_number, group=group.code)
        for item, text in zip(group.items, fields, strict=False):
            self._check_item(group, item.position, text)
        return tuple(fields[:expected]) + ("",) * (expected - len(fields))

    def _check_item(self, group: GroupDefinition, position: int, text: str) -> None:
        item = group.items[position - 1]
        problem = item.problem(text)
        if problem:
            self._defect("item-format" if item.values is None or item.format.check(text) else "item-value", problem,
                         line=self._line_number, group=group.code, item=position, item_key=item.key,
                         item_format=item.format.text)

    # -- trailer --------------------------------------------------------------------------------------------------

    def _read_trailer(self, line: str) -> None:
        assert self.header is not None
        line_number = self._line_number
        terminated = line.endswith("|") and self.header.terminated
        fields = (line[:-1] if terminated else line).split("|")
        if fields[0] != "ZPT":
            self._defect("trailer-code", f"the trailer's first field must be ZPT, found {fields[0][:40]!r}",
                         line=line_number, group="ZPT")
        if self.header.layout == "ZHV":
            if len(fields) != 6:
                self._defect("trailer-fields", f"a ZPT trailer has 5 fields, found {len(fields) - 1}",
                             line=line_number, group="ZPT")
                return
            _, file_identifier, group_count, checksum, flow_count, completed = fields
            self.trailer = FileTrailer(file_identifier, _int(group_count), checksum, _int(flow_count), completed)
            if file_identifier != self.header.file_identifier:
                self._defect("trailer-file-identifier", f"file identifier {quoted(file_identifier)} differs from the "
                             f"header's {quoted(self.header.file_identifier)}", line=line_number, group="ZPT", item=1)
            self._expect(group_count, self.group_count % _GROUP_COUNT_MODULUS, "trailer-group-count",
                         "Total Group Count", 2)
            self._expect(flow_count, self.flow_count, "trailer-flow-count", "Flow Count", 4)
            problem = _DATETIME.check(completed)
            if problem:
                self._defect("trailer-field", problem, line=line_number, group="ZPT", item=5,
                             item_key="completed", item_format="DATETIME")
            return
        if len(fields) != 3:
            self._defect("trailer-fields", f"a pool ZPT trailer has 2 fields, found {len(fields) - 1}",
                         line=line_number, group="ZPT")
            return
        _, record_count, checksum = fields
        self.trailer = FileTrailer(None, _int(record_count), checksum, None, None)
        self._expect(record_count, self.group_count + 2, "trailer-record-count", "Record Count", 1)
        self._expect(checksum, self._checksum.value, "trailer-checksum", "Checksum", 2)

    def _expect(self, written: str, actual: int, rule: str, name: str, item: int) -> None:
        if _int(written) != actual:
            self._defect(rule, f"{name} is {written[:40]!r}{'...' if len(written) > 40 else ''} but the file has "
                         f"{actual}", line=self._line_number, group="ZPT", item=item)


def _shown(extra: list[str]) -> str:
    """Extra fields as a short list: a line of a million pipes must not make a million-field message."""
    head = [field[:40] for field in extra[:3]]
    return f"{head!r}" if len(extra) <= 3 else f"{head!r} and {len(extra) - 3} more"


def _int(text: str) -> int | None:
    """A trailer's count, or None: not digits, or more digits than any count (Python refuses to convert a text of
    over 4300 digits, and a mutated file may hold one)."""
    return int(text) if text.isdigit() and text.isascii() and len(text) <= _COUNT_DIGITS else None


def _one_line_each(block: str, lines: list[str], final: bool) -> bool:
    """True when each of `lines` is one line with its line end (the last may lack it at the end of the stream), as
    a stream opened with newline='' (or None, or '\\n') yields them; a block that is not is read line by line."""
    ends = block.count("\n")
    if "\r" in block:
        ends += block.count("\r") - block.count("\r\n")
        if "\r\n" in block and not lines[0].endswith("\n"):  # newline='\\r': CR LF split across two lines
            return False
    open_last = bool(lines) and lines[-1][-1:] not in ("\n", "\r")
    return ends == len(lines) - open_last and (final or not open_last)


SpanCheck = Callable[[str, int, int, bool], bool]  # (text, start, end, has CRs) -> True when the span passes


class _Lines:
    """The lines of one group in a text of whole lines, found at C speed: each expression starts with a literal or
    a line end, which the regex engine searches for rather than trying every position."""

    __slots__ = ("any_end", "first", "lf")

    def __init__(self, body: str) -> None:
        self.first = re.compile(body)  # the line the span starts with (no line end before it within the span)
        self.lf = re.compile("\n" + body)
        self.any_end = re.compile("[\r\n]" + body)

    def values(self, text: str, start: int, end: int, crs: bool) -> list[str]:
        """The captured item of every such line."""
        head = self.first.match(text, start, end)
        found: list[str] = (self.any_end if crs else self.lf).findall(text, start, end)
        return [head[1], *found] if head is not None else found

    def starts(self, text: str, start: int, end: int, crs: bool) -> list[re.Match[str]]:
        """Every such line, as a match starting at its line end (at `start` for the first line)."""
        head = self.first.match(text, start, end)
        found = list((self.any_end if crs else self.lf).finditer(text, start, end))
        return [head, *found] if head is not None else found


def _item_lines(group: GroupDefinition, position: int) -> _Lines:
    """The lines of `group`, capturing the item at `position`."""
    return _Lines(re.escape(group.code) + r"\|" + r"[^|\r\n]*\|" * (position - 1) + r"([^|\r\n]*)")


def _span_checks(definition: FlowDefinition, severities: Mapping[str, Severity],
                 strict: bool) -> dict[GroupDefinition, list[SpanCheck]]:
    """Per level-1 group, the named checks a span of its instances must pass, at C speed where it can: a span that
    matched its instance expression has items of the right format in the right places, so the values to check can
    be found by their position in the line. A span that fails is read line by line, which locates the defect."""
    checks: dict[GroupDefinition, list[SpanCheck]] = {}
    for top in definition.level1:
        found: list[SpanCheck] = []
        for group in (top, *top.descendants()):
            if severities[MPAN_CHECK_DIGIT] != "off":
                found.extend(_mpan_span_check(_item_lines(group, item.position)) for item in group.item_checks)
            for child in group.children:
                period = child.periods
                if period is not None and severities[SETTLEMENT_PERIODS] != "off" and not period.implied_by(
                        child.range_for(strict)):
                    child_lines = _Lines(re.escape(child.code) + r"(?=[|\r\n]|\Z)")
                    found.append(_periods_span_check(_item_lines(group, period.date_item.position), child_lines,
                                                     period.clock))
        if found:
            checks[top] = found
    return checks


def _mpan_span_check(lines: _Lines) -> SpanCheck:
    def check(text: str, start: int, end: int, crs: bool) -> bool:
        return all(map(mpan_valid, filter(None, lines.values(text, start, end, crs))))
    return check


def _periods_span_check(parents: _Lines, children: _Lines, clock: Clock) -> SpanCheck:
    def check(text: str, start: int, end: int, crs: bool) -> bool:
        found = parents.starts(text, start, end, crs)
        bounds = [parent.start() for parent in found[1:]] + [end]
        return all(not parent[1] or periods_problem(parent[1], len(children.starts(text, parent.start(), bound,
                                                                                   crs)), clock) is None
                   for parent, bound in zip(found, bounds, strict=True))
    return check


def _code_at(text: str, pos: int) -> str:
    """The code the walk reads in the line at `pos`: its first three characters, or its whole first field when that
    is longer ("0260|..." is no group 026), or ZPT for the trailer."""
    code = text[pos:pos + 3]
    if code == "ZPT" or text[pos + 3:pos + 4] in ("|", "\r", "\n", ""):
        return code
    found = _FIELD.match(text, pos)
    assert found is not None  # the pattern matches the empty field too
    return found[0][:40]


def _takes(candidates: Iterable[GroupDefinition], last: GroupDefinition, count: int,
           limits: dict[GroupDefinition, int | None]) -> bool:
    """True when the root, having just taken `count` instances of `last`, would take a line of `candidates`' code."""
    return any(candidate.index > last.index or (candidate is last and (limits[last] is None or count < limits[last]))
               for candidate in candidates)


def _failing(error: UnicodeDecodeError | UnreadableLine) -> Iterator[str]:
    """The lines past a decoding error: raise it again when they are read, as the stream did."""
    raise error
    yield ""  # a generator


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
