"""The line walk: the body of a file read line by line, each line placed in the tree of its flow instance and
checked, with every defect collected in the pass's DefectLog.

Nesting follows the DTC: a group belongs to the nearest open group that may contain it, and siblings appear in
definition order. Lines are checked whole against a compiled expression per group; only a line that fails is split
and checked item by item, so that its defects can be located precisely. The walk keeps its state between calls, so
the validation pass by blocks (bridge/dtn/blocks.py) can hand it any span of lines it does not match itself.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator

from bridge.dtn.checks import MPAN_CHECK_DIGIT, SETTLEMENT_PERIODS, mpan_problem, mpan_valid, periods_problem
from bridge.dtn.compiled import FlowDefinition, GroupDefinition
from bridge.dtn.defects import DefectLog
from bridge.dtn.envelope import shown
from bridge.dtn.lines import UnreadableLine
from bridge.dtn.model import FlowInstance, GroupInstance


class Frame:
    """An open group that may still receive children."""

    __slots__ = ("counts", "cursor", "definition", "instance")

    def __init__(self, definition: GroupDefinition, instance: GroupInstance | None) -> None:
        self.definition = definition
        self.instance = instance
        self.cursor = -1  # index of the last child definition matched: siblings only move forward
        self.counts: dict[GroupDefinition, int] = {}


class LineWalk:
    """The state of one file's body between lines: the open groups, the instance being built, the counts so far,
    and the trailer line once met (`trailer_line`); `undecodable` once a line could not be read."""

    __slots__ = ("checksum_add", "current", "definition", "flows", "groups", "limits", "line_number", "log",
                 "stack", "strict", "terminated", "trailer_line", "undecodable")

    def __init__(self, definition: FlowDefinition, terminated: bool, strict: bool, log: DefectLog,
                 checksum_add: Callable[[str], None] | None) -> None:
        assert definition.root is not None
        self.definition = definition
        self.terminated = terminated
        self.strict = strict
        self.log = log
        # Only pool files are held to a checksum: for ZHV files the DTC is silent on the algorithm (dtc-format.md
        # 1.3), so a ZHV checksum is carried verbatim into the events rather than judged.
        self.checksum_add = checksum_add
        self.stack = [Frame(definition.root, None)]
        self.limits = {group: group.range_for(strict).maximum for group in definition.groups}
        self.current: FlowInstance | None = None
        self.flows = 0
        self.groups = 0
        self.line_number = 1  # the header's
        self.trailer_line: str | None = None
        self.undecodable = False

    def walk(self, lines: Iterable[str]) -> Iterator[FlowInstance]:
        """The hot loop: kept flat, with locals only, because it runs once per line of every file.

        Reads body lines until the ZPT trailer (kept in `trailer_line`), the end of `lines` or the defect limit,
        yielding each flow instance once the next one starts (the last stays in `current`).
        """
        strict = self.strict
        limits = self.limits
        terminated = self.terminated
        log = self.log
        checksum_add = self.checksum_add
        stack = self.stack
        current = self.current
        flow_count = self.flows
        group_count = self.groups
        line_number = self.line_number
        new_instance = GroupInstance
        try:
            for raw in lines:
                line_number += 1
                self.line_number = line_number
                line = raw.rstrip("\r\n")
                code = line[:3]
                if code == "ZPT":
                    self.trailer_line = line
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
                    self._misplaced(code)
                    if log.truncated:
                        break
                    continue
                if terminated and line[-1:] != "|":  # in pool files a final '|' just ends an empty last item
                    log.add("line-terminator", "the line must end with '|', as the header does", line=line_number,
                            group=code)
                pattern = group.line_patterns.get(terminated) or group.line_pattern(terminated)
                match = pattern.fullmatch(line)  # calendar-exact: no day to re-check
                values = match.groups() if match is not None else self._check_line(group, line)
                if group.item_checks:
                    self._check_items(group, values, match is not None)
                instance = new_instance(group, values, line_number, [] if group.children else None)
                while len(stack) > depth + 1:
                    self.close(stack.pop(), strict)
                parent = stack[-1].instance
                if parent is None:
                    if current is not None:
                        yield current
                    flow_count += 1
                    current = FlowInstance(flow_count, instance)
                else:
                    parent.children.append(instance)
                if group.children:
                    stack.append(Frame(group, instance))
                if log.truncated:
                    break
        except (UnicodeDecodeError, UnreadableLine) as exc:
            self.unreadable(exc, line_number + 1)
        finally:
            self.current = current
            self.flows = flow_count
            self.groups = group_count

    def walk_all(self, lines: Iterable[str]) -> None:
        """Walk `lines`, discarding the instances (the validation pass)."""
        for _ in self.walk(lines):
            pass

    def unreadable(self, error: UnicodeDecodeError | UnreadableLine, line: int) -> None:
        """The line that ends the pass early: nothing after it is read or judged."""
        self.undecodable = True
        self.log.unreadable(error, line)

    def close_open(self) -> None:
        """Close every open group below the root, as the next level-1 line (or the end of the body) does."""
        stack = self.stack
        while len(stack) > 1:
            self.close(stack.pop(), self.strict)

    def close(self, frame: Frame, strict: bool) -> None:
        """Check that every child group occurred as often as its range allows."""
        for child in frame.definition.children:
            count = frame.counts.get(child, 0)
            cardinality = child.range_for(strict)
            if not cardinality.admits(count):
                owner = (f"group {frame.definition.code} (line {frame.instance.line})" if frame.instance
                         else "the file")
                self.log.add("group-range", f"{owner} must contain {cardinality.text} group {child.code} "
                             f"({child.name}), found {count}", line=frame.instance.line if frame.instance else None,
                             group=frame.definition.code if frame.instance else child.code)
            elif child.periods is not None and frame.instance is not None:
                self._check_periods(frame.instance, child, count)

    def _misplaced(self, code: str) -> None:
        line = self.line_number
        if not code.strip() and len(code) < 3:
            self.log.add("blank-line", "an empty line", line=line)
            return
        known = [group for group in self.definition.groups if group.code == code]
        if not known:
            self.log.add("group-unknown", f"{code!r} is not a group of {self.definition.reference}", line=line,
                         group=code)
            return
        expected = known[0]
        open_codes = [frame.definition.code for frame in self.stack[1:]]
        parent_code = expected.parent.code if expected.parent and expected.parent.level else None
        if parent_code and parent_code not in open_codes:
            message = f"group {code} must be inside a group {parent_code}"
        else:
            message = (f"group {code} may not appear here: out of DTC order, or more often than its range "
                       f"{expected.range_for(self.strict).text} allows")
        self.log.add("group-unexpected", message, line=line, group=code)

    def _check_periods(self, parent: GroupInstance, child: GroupDefinition, count: int) -> None:
        """settlement_periods: `count` instances of the period group `child` under `parent` fit its date."""
        check = child.periods
        assert check is not None
        if self.log.severities[SETTLEMENT_PERIODS] == "off" or check.implied_by(child.range_for(self.strict)):
            return
        item = check.date_item
        text = parent.values[item.position - 1]
        if not text or item.problem(text):  # a wrong date is reported as such
            return
        problem = periods_problem(text, count, check.clock)
        if problem is not None:
            self.log.failed_check(SETTLEMENT_PERIODS, f"group {child.code} ({child.name}): {problem}",
                                  line=parent.line, group=parent.definition.code, item=item.position,
                                  item_key=item.key, item_format=item.format.text)

    def _check_line(self, group: GroupDefinition, line: str) -> tuple[str, ...]:
        """The slow path: say exactly which items are wrong."""
        body = line[:-1] if line.endswith("|") and self.terminated else line
        fields = body.split("|")[1:]
        expected = len(group.items)
        if len(fields) != expected:
            extra = f": extra {shown(fields[expected:])}" if len(fields) > expected else ""
            self.log.add("item-count", f"expected {expected} items, found {len(fields)}{extra}",
                         line=self.line_number, group=group.code)
        for item, text in zip(group.items, fields, strict=False):
            problem = item.problem(text)
            if problem:
                self.log.add("item-format" if item.values is None or item.format.check(text) else "item-value",
                             problem, line=self.line_number, group=group.code, item=item.position,
                             item_key=item.key, item_format=item.format.text)
        return tuple(fields[:expected]) + ("",) * (expected - len(fields))

    def _check_items(self, group: GroupDefinition, values: tuple[str, ...], well_formed: bool) -> None:
        """The named checks of a line's items (the only one: mpan_check_digit). An item whose format is already
        reported wrong is not judged again."""
        if self.log.severities[MPAN_CHECK_DIGIT] == "off":
            return
        for item in group.item_checks:
            text = values[item.position - 1]
            if not text or mpan_valid(text) or (not well_formed and item.problem(text)):
                continue
            self.log.failed_check(MPAN_CHECK_DIGIT, mpan_problem(text) or "", line=self.line_number,
                                  group=group.code, item=item.position, item_key=item.key,
                                  item_format=item.format.text)
