"""The second pass over a file the first pass found valid: its flow instances again, fast, without checking items.

Only for flows whose group codes are all distinct (`FlowDefinition.group_by_code`): a line's code then says which
group it is, and its parent is the latest line of the parent group. Two ways to read:

* `placed_by_code`, line by line: one dict lookup and one split per line; each instance as a tree of groups, or as
  its event object (`as_objects`).
* `data_by_blocks`, for the inbound build stage: the text in large blocks, each flow instance as its event object,
  with every run of leaf lines of one group (D0275's 48 half-hourly periods a day: nearly all of a file) written
  straight to canonical JSON a column at a time, with no Python code per line (`LeafRun`). The lines that open
  groups, and short runs, are handled line by line; so is a run the columns cannot write exactly (an item empty in
  some lines only, a character JSON must escape, a zero-padded integer), so that the JSON is always what
  `canonicalize` writes for the objects `placed_by_code` builds (property-tested in tests/dtn/test_second_pass.py).

Neither checks an item again: given the file's SHA-256 from before the first pass, `bridge.inbound.flowfile.file_events`
proves instead that it read the very bytes the first pass checked. A line that cannot be placed raises FlowFileError
(`file-changed`) all the same.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from functools import lru_cache
from typing import Any, TextIO

import orjson

from bridge.dtn.compiled import FlowDefinition, GroupDefinition
from bridge.dtn.formats import LogicalFormat
from bridge.dtn.model import Defect, FlowInstance, GroupInstance
from bridge.dtn.valid import ValidFile
from bridge.errors import FlowFileError

BLOCK_CHARS = 1 << 18  # characters read at a time by `data_by_blocks`
_SHORT_RUN = 4  # leaf lines in a row below which building them one by one is faster than by columns


def file_changed(line: int, group: str) -> FlowFileError:
    defect = Defect("file-changed", "the file is not what the first pass read: it changed between the passes",
                    line=line, group=group)
    return FlowFileError(f"line {line}: the file changed between the passes", [defect])


def placed_by_code(lines: Iterable[str], by_code: dict[str, GroupDefinition], terminated: bool,
                   checked: ValidFile, as_objects: bool) -> Iterator[FlowInstance]:
    """The second pass line by line (`FlowFileReader.read_valid`).

    Each instance also keeps its lines as `code|item|...|item` (its `content`, the event id's input), which the
    lines already are, less a terminating pipe. `as_objects`: each line becomes its event object at once (its items
    by key, through the formats' `to_json`, its child groups by key), with no GroupInstance but the root's.
    """
    open_groups: list[tuple[GroupDefinition, Any]] = []  # the latest line at each level 1, 2, ... still open
    flows = groups = 0
    line_number = 1
    current: FlowInstance | None = None
    content: list[str] = []
    source = iter(lines)
    next(source, None)  # the header, read by the first pass
    for raw in source:
        line_number += 1
        line = raw.rstrip("\r\n")
        if line[:3] == "ZPT":
            break
        group, values, body = _fields(line, by_code, terminated, line_number)
        groups += 1
        level = group.level
        del open_groups[level - 1:]  # a line closes every deeper group, as in `read`
        node: Any = _event_object(group, values) if as_objects else GroupInstance(
            group, values, line_number, [] if group.children else None)
        if level == 1:
            if current is not None:
                current.content = "\n".join(content)
                yield current
            flows += 1
            if as_objects:
                current = FlowInstance(flows, GroupInstance(group, values, line_number), data={group.key: node})
            else:
                current = FlowInstance(flows, node)
            content = []
        else:
            parent = _parent(open_groups, group, line_number)
            if not as_objects:
                parent.children.append(node)
            else:
                _attach(parent, group, node)
        open_groups.append((group, node))
        content.append(body if len(body) > 3 else body + "|")
    else:
        raise file_changed(line_number + 1, "ZPT")
    if flows != checked.flow_count or groups != checked.group_count:
        raise file_changed(line_number, "ZPT")
    if current is not None:
        current.content = "\n".join(content)
        yield current


def data_by_blocks(stream: TextIO, checked: ValidFile, *, block_chars: int = BLOCK_CHARS,
                   wanted: Callable[[int], bool] | None = None) -> Iterator[FlowInstance]:
    """The second pass in blocks: each flow instance with its `content` and its event object (`data`), in which a
    run of leaf lines may stand as an `orjson.Fragment` of its canonical JSON.

    `stream`: text with universal newlines (opened with newline=None), so that every line ends in '\\n'. The events
    made of these instances are for `canonicalize(..., known_types=True)` (or orjson): fragments are opaque to code
    that walks the data. `wanted(index)`: which instances to make (the others are only counted).
    """
    definition = checked.definition
    plan = _plan(definition, checked.header.terminated)
    stream.readline()  # the header, read by the first pass
    line_number = 1
    flows = groups = 0
    carry = ""
    while True:
        chunk = stream.read(block_chars)
        pieces = plan.boundary.split(carry + chunk)  # each piece one instance's lines, or the trailer on
        carry = pieces.pop() if chunk else ""
        for block in pieces:
            if not block:  # no trailer, or an empty line
                raise file_changed(line_number + 1, "ZPT")
            if block.startswith("ZPT"):
                if flows != checked.flow_count or groups != checked.group_count:
                    raise file_changed(line_number + 1, "ZPT")
                return
            flows += 1
            lines = block.count("\n") + 1
            if wanted is None or wanted(flows):
                yield plan.instance(block, flows, line_number)
            line_number += lines
            groups += lines
        if not chunk:
            raise file_changed(line_number + 1, "ZPT")


# -- one line --------------------------------------------------------------------------------------------------------


def _fields(line: str, by_code: dict[str, GroupDefinition], terminated: bool,
            line_number: int) -> tuple[GroupDefinition, tuple[str, ...], str]:
    """A line's group, its items' texts and its body (the line less a terminating pipe)."""
    code = line[:3]
    group = by_code.get(code)
    body = line[:-1] if terminated else line
    values = tuple(body.split("|")[1:])
    if (group is None or len(values) != len(group.items) or (terminated and line[-1:] != "|")
            or line[3:4] not in ("|", "")):
        raise file_changed(line_number, code)
    return group, values, body


def _event_object(group: GroupDefinition, values: tuple[str, ...]) -> dict[str, Any]:
    """A line's event object: its non-empty items by key, as `to_json` gives them (its child groups come later)."""
    return {key: text if convert is None else convert(text) for (key, convert), text in zip(group.json_items, values)
            if text}


def _parent(open_groups: list[tuple[GroupDefinition, Any]], group: GroupDefinition, line_number: int) -> Any:
    """The latest line of the group's parent, which must be the deepest group open above the line's level."""
    if len(open_groups) < group.level - 1:
        raise file_changed(line_number, group.code)
    parent_group, parent = open_groups[group.level - 2]
    if parent_group is not group.parent:
        raise file_changed(line_number, group.code)
    return parent


def _attach(parent: dict[str, Any], group: GroupDefinition, node: Any) -> None:
    if group.single:
        parent[group.key] = node
    else:
        parent.setdefault(group.key, []).append(node)


# -- runs of leaf lines as JSON --------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class _Column:
    """One item of a leaf group as a member of its JSON object."""

    name: str  # the key as a JSON string, e.g. '"mpan_core"'
    field: int  # the item's field in the line (0 is the group code)
    logical: LogicalFormat

    def values(self, texts: list[str]) -> tuple[list[str], bool] | None:
        """The column's JSON values (texts already safe inside a JSON string) and whether they are quoted; None
        where `to_json` would not give them all the same way (a zero-padded or huge integer, a bad boolean)."""
        kind = self.logical.kind
        if kind in ("CHAR", "NUM"):
            return texts, True
        if kind == "INT":  # a number, unless zero-padded (then a string) or beyond 2**53 (then refused)
            if ("|" + "|".join(texts)).count("|0") != texts.count("0") or max(map(len, texts)) > 15:
                return None
            return texts, False
        if kind == "BOOLEAN":
            try:
                return list(map(_BOOLEANS.__getitem__, texts)), False
            except KeyError:
                return None
        return list(map(self.logical.to_json, texts)), True  # type: ignore[arg-type]  # DATE, DATETIME, TIME: str


_BOOLEANS = {"T": "true", "F": "false"}


@dataclass(frozen=True, slots=True)
class LeafRun:
    """A leaf group whose lines are written as JSON a whole run at a time: the run is split into fields once, each
    item becomes a column (one slice of the fields), and the columns are interleaved with the members' fixed text,
    in key order, by list slice assignment and one join. No Python code runs per line."""

    group: GroupDefinition
    columns: tuple[_Column, ...]  # in key order (RFC 8785: ASCII keys sort as Python sorts them)
    period: int  # fields per line once line ends are turned into '|'
    terminated: bool
    other: re.Pattern[str]  # the line end before a line of another group

    @classmethod
    def compile(cls, group: GroupDefinition, terminated: bool) -> LeafRun | None:
        """None for a group with children (its lines open groups) or a key that is not ASCII."""
        if group.children or not all(item.key.isascii() for item in group.items):
            return None
        columns = sorted((_Column(orjson.dumps(item.key).decode(), item.position, item.format)
                          for item in group.items if item.presence != "unused"), key=lambda column: column.name)
        other = re.compile(f"\\n(?!{re.escape(group.code)}(?:\\||$))", re.MULTILINE)
        return cls(group, tuple(columns), len(group.items) + 1 + terminated, terminated, other)

    def json(self, run: str, lines: int) -> orjson.Fragment | None:
        """The JSON of `lines` lines of this group (joined by '\\n', no last line end): an array, or the object of a
        group that occurs at most once. None when the run is not exactly that, or holds a text JSON must escape, or
        mixes empty and filled texts in one item: those runs are built line by line."""
        flat = run.replace("\n", "|")
        if '"' in flat or "\\" in flat or not flat.isprintable() or (self.group.single and lines != 1):
            return None
        fields = flat.split("|")
        period = self.period
        if len(fields) != lines * period or fields[0::period].count(self.group.code) != lines or (
                self.terminated and fields[period - 1::period].count("") != lines):
            return None
        members: list[tuple[str, list[str], bool]] = []
        for column in self.columns:
            texts = fields[column.field::period]
            empty = texts.count("")
            if empty:  # an empty item is left out of its object: all or none of the run's, or line by line
                if empty != lines:
                    return None
                continue
            written = column.values(texts)
            if written is None:
                return None
            members.append((column.name, *written))
        if not members:
            text = ",".join(["{}"] * lines)
        else:
            width = 2 * len(members) + 1
            pieces = [""] * (lines * width)
            before = "{"
            for position, (name, column_values, quoted) in enumerate(members):
                pieces[2 * position::width] = [before + name + (':"' if quoted else ":")] * lines
                pieces[2 * position + 1::width] = column_values
                before = '",' if quoted else ","
            pieces[width - 1::width] = [before[:-1] + "},"] * lines
            text = "".join(pieces)[:-1]
        return orjson.Fragment(text if self.group.single else "[" + text + "]")


class _Plan:
    """What `data_by_blocks` needs of one flow, compiled once per flow and line style."""

    def __init__(self, definition: FlowDefinition, terminated: bool) -> None:
        assert definition.group_by_code is not None and definition.root is not None
        self.by_code = definition.group_by_code
        self.terminated = terminated
        self.runs: dict[str, LeafRun] = {}
        for group in definition.groups:
            run = LeafRun.compile(group, terminated) if group.level > 1 else None
            if run is not None:
                self.runs[group.code] = run
        level1 = sorted(group.code for group in definition.root.children)
        opening = sorted(code for code in self.by_code if code not in self.runs)  # handled line by line
        # An instance starts at a level-1 line; the trailer ends the last one.
        self.boundary = re.compile("\n(?=(?:" + "|".join(map(re.escape, [*level1, "ZPT"])) + ")(?:\\||$))",
                                   re.MULTILINE)
        # Splitting "\n" + an instance + "\n" at its lines that are not in runs: [run, line, run, line, run, ...]
        self.lines = re.compile("\n((?:" + "|".join(map(re.escape, opening)) + ")(?:\\|[^\n]*)?)(?=\n)")
        # The event id's input is each line less its terminating pipe; a line of just a code keeps one.
        self.bare_codes = any(not group.items for group in definition.groups)

    def instance(self, block: str, index: int, line_number: int) -> FlowInstance:
        """One instance from its lines (without the last line end); `line_number`: the line before it."""
        parts = self.lines.split("\n" + block + "\n")
        if parts[0]:  # an instance starts with its level-1 line
            raise file_changed(line_number + 1, parts[0][1:4])
        open_groups: list[tuple[GroupDefinition, Any]] = []
        root: GroupInstance | None = None
        data: dict[str, Any] = {}
        last = len(parts) - 1
        for position in range(1, last, 2):
            line_number += 1
            group, values, _body = _fields(parts[position], self.by_code, self.terminated, line_number)
            node = _event_object(group, values)
            if group.level == 1:
                if root is not None:
                    raise file_changed(line_number, group.code)
                root = GroupInstance(group, values, line_number)
                data[group.key] = node
            else:
                del open_groups[group.level - 1:]  # a line closes every deeper group
                _attach(_parent(open_groups, group, line_number), group, node)
            open_groups.append((group, node))
            run = parts[position + 1]
            if len(run) > 1:  # "\n" + its lines (+ "\n" after the instance's last)
                line_number = self._run(run[1:-1] if position + 1 == last else run[1:], open_groups, line_number)
        assert root is not None
        return FlowInstance(index, root, content=self._content(block), data=data)

    def _run(self, run: str, open_groups: list[tuple[GroupDefinition, Any]], line_number: int) -> int:
        """Place a run of leaf lines (joined by '\\n'), one group's lines at a time; the number of its last line."""
        start = 0
        while start < len(run):
            leaf = self.runs.get(run[start:start + 3])
            end = len(run)
            if leaf is not None and (start or run.count("\n" + leaf.group.code) != run.count("\n")):
                other = leaf.other.search(run, start)  # the first line of another group
                end = other.start() if other is not None else end
            line_number = self._place(run[start:end], leaf, open_groups, line_number)
            start = end + 1
        return line_number

    def _place(self, run: str, leaf: LeafRun | None, open_groups: list[tuple[GroupDefinition, Any]],
               line_number: int) -> int:
        """Place lines of one leaf group: by columns when there are enough of them, else (or when the columns
        cannot write them) line by line."""
        lines = run.count("\n") + 1
        fragment = leaf.json(run, lines) if leaf is not None and lines >= _SHORT_RUN else None
        if fragment is not None:
            assert leaf is not None
            group = leaf.group
            del open_groups[group.level - 1:]
            parent = _parent(open_groups, group, line_number + 1)
            if group.key in parent:  # a second run of one group under one parent: not a valid file
                raise file_changed(line_number + 1, group.code)
            parent[group.key] = fragment
            return line_number + lines
        for line in run.split("\n"):
            line_number += 1
            group, values, _body = _fields(line, self.by_code, self.terminated, line_number)
            del open_groups[group.level - 1:]
            parent = _parent(open_groups, group, line_number)
            if type(parent.get(group.key)) is orjson.Fragment:
                raise file_changed(line_number, group.code)
            _attach(parent, group, _event_object(group, values))
        return line_number

    def _content(self, block: str) -> str:
        """The instance's lines as `placed_by_code` keeps them: less a terminating pipe, but never less than
        `code|`."""
        if self.bare_codes:
            return "\n".join(body if len(body) > 3 else body + "|"
                             for body in (line[:-1] if self.terminated else line for line in block.split("\n")))
        return block.replace("|\n", "\n")[:-1] if self.terminated else block


@lru_cache(maxsize=64)
def _plan(definition: FlowDefinition, terminated: bool) -> _Plan:
    return _Plan(definition, terminated)
