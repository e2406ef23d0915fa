"""The validation pass at C speed: a text stream read in blocks of lines, whole runs of flow instances matched with
one expression per run (see `FlowDefinition.compile_instances`).

Each span from one level-1 line to the next (or to ZPT) either matches its group's instance expression and is
counted as the line walk would count it (lines, flows, the root's order and counts), or is handed to the walk
(bridge/dtn/walk.py), which says exactly what is wrong; so the defects, counts and envelope are the same either way.
Blocks end at the last instance boundary they hold; the rest waits for the next block, up to `span_cap`
characters, past which the instance is read line by line.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Iterator, Mapping
from itertools import chain, islice
from typing import Final

from bridge.dtn.checks import (
    MPAN_CHECK_DIGIT,
    SETTLEMENT_PERIODS,
    Clock,
    Severity,
    mpan_valid,
    periods_problem,
)
from bridge.dtn.compiled import FlowDefinition, GroupDefinition
from bridge.dtn.lines import LINE, RECORD, UNDECODABLE, UnreadableLine, failing, one_line_each, undecodable
from bridge.dtn.walk import LineWalk

BLOCK_LINES: Final = 8192  # lines read from the stream at a time by the validation pass
SPAN_CAP: Final = 8 << 20  # characters held waiting for the end of one flow instance before reading it line by line
_FIELD = re.compile(r"[^|\r\n]*")  # a line's first field, up to its first '|' or line end

SpanCheck = Callable[[str, int, int, bool], bool]  # (text, start, end, has CRs) -> True when the span passes
Failure = UnicodeDecodeError | UnreadableLine


class BlockCheck:
    """One validation pass by blocks over the body of a text stream, continuing `walk` (just past the header)."""

    def __init__(self, walk: LineWalk, source: Iterable[str], lines: Iterator[str], block_lines: int,
                 span_cap: int, severities: Mapping[str, Severity]) -> None:
        definition = walk.definition
        assert definition.boundary is not None
        self.walk = walk
        self.source = source  # the stream `lines` reads, without a Python call per line: checked by the block
        self.lines = lines  # the lines left for after the trailer
        self.block_lines = block_lines
        self.span_cap = span_cap
        self.level1 = walk.stack[0].definition.child_codes
        self.patterns = {group: definition.instance_pattern(group, walk.terminated, walk.strict)
                         for group in definition.level1}
        self.boundary = definition.boundary
        self.after_lf = ["\n" + code for code in definition.boundary_codes]
        self.after_cr = ["\r" + code for code in definition.boundary_codes]
        self.span_checks = _span_checks(definition, severities, walk.strict)
        self.failure: Failure | None = None  # the error that ended the stream early

    def run(self) -> Iterator[str]:
        """Check the body up to and including the trailer line (left in the walk); the lines after it."""
        walk = self.walk
        log = walk.log
        stream = self.lines
        carry = ""  # whole lines from an instance boundary on, waiting for the next block
        while True:
            lines, block = self._next_block()
            final = self.failure is not None or len(lines) < self.block_lines
            rest: Iterator[str] = failing(self.failure) if self.failure is not None else stream
            if not one_line_each(block, lines, final) or (carry[-1:] == "\r" and block[:1] == "\n"):
                walking = chain(LINE.findall(carry), lines)  # not split as expected: read this block line by line
                carry = ""
                walk.walk_all(walking)
                if walk.trailer_line is not None:
                    self.lines = chain(walking, rest)
            else:
                text = carry + block
                if final and text[-1:] not in ("\n", "\r", ""):
                    text += "\n"  # the last line may lack its line end; the walk strips it all the same
                pos = self._spans(text, final, rest)
                carry = text[pos:]
            if walk.trailer_line is not None or log.truncated or walk.undecodable or final:
                return self.lines
            if len(carry) > self.span_cap:
                walk.walk_all(iter(LINE.findall(carry)))  # one huge instance: its lines so far, one by one
                carry = ""
                if log.truncated:
                    return self.lines

    def _next_block(self) -> tuple[list[str], str]:
        """The next block's lines, up to the first that cannot be read (kept in `failure`), and their text."""
        lines: list[str] = []
        try:
            lines.extend(islice(self.source, self.block_lines))  # keeps the lines read before a decoding error
        except (UnicodeDecodeError, UnreadableLine) as exc:
            self.failure = exc
        block = "".join(lines)
        if not block.isascii() and UNDECODABLE.search(block):  # rare: find the line, keep those before it
            index, self.failure = next((n, problem) for n, line in enumerate(lines)
                                       if (problem := undecodable(line)) is not None)
            del lines[index:]
            block = "".join(lines)
        return lines, block

    def _spans(self, text: str, final: bool, rest: Iterator[str]) -> int:
        """Check the complete instances of `text` (all of it when `final`), span by span; where it stopped."""
        walk = self.walk
        crs = "\r" in text
        if final:
            limit = len(text)
        else:  # the start of the last line that opens an instance (or is ZPT): all before it is complete
            limit = max(text.rfind(end) for end in self.after_lf)
            if crs:
                limit = max(limit, *(text.rfind(end) for end in self.after_cr))
            limit += 1  # not found: 0
        pos = 0
        while not walk.log.truncated:
            if text.startswith("ZPT", pos):  # the trailer: the walk reads it, and the parse what follows
                self.lines = chain(LINE.findall(text, pos), rest)
                walk.walk_all(self.lines)
                break
            if pos >= limit:
                break
            end = self._matched(text, pos, limit, crs)
            if end is None:
                found = self.boundary.search(text, pos)
                end = found.end() if found is not None and found.end() <= limit else limit
                walk.walk_all(iter(LINE.findall(text, pos, end)))
            pos = end
        return pos

    def _matched(self, text: str, pos: int, limit: int, crs: bool) -> int | None:
        """Where the run of valid instances at `pos` ends, counted (or walked, when a named check fails) as the walk
        would; None when no instance matches there."""
        walk = self.walk
        root = walk.stack[0]
        limits = walk.limits
        code = text[pos:pos + 3]
        group = None
        for candidate in self.level1.get(code, ()):  # as the walk's root frame would place this line
            if candidate.index > root.cursor or (candidate.index == root.cursor and _below(root.counts[candidate],
                                                                                         limits[candidate])):
                group = candidate
                break
        pattern = self.patterns.get(group) if group is not None else None
        match = pattern.match(text, pos, limit) if pattern is not None else None
        if match is None:
            return None
        assert group is not None
        end = match.end()
        flows = 1
        if limits[group] is None:  # a run: count its level-1 lines
            flows += text.count("\n" + code, pos, end)
            flows += text.count("\r" + code, pos, end) if crs else 0
        count = flows + (root.counts[group] if group.index == root.cursor else 0)
        following = _code_at(text, end)
        if following and following != "ZPT" and not _takes(self.level1.get(following, ()), group, count, limits):
            # the walk would refuse the next line and keep this instance's groups open for the lines after it, so
            # the last instance must be walked for its open groups to exist
            last = text.rfind("\n" + code, pos, end)
            if crs:
                last = max(last, text.rfind("\r" + code, pos, end))
            end = pos if last < 0 else last + 1
            flows -= 1
        if not flows:
            return None
        checks = self.span_checks.get(group)
        if checks and not all(check(text, pos, end, crs) for check in checks):
            walk.walk_all(iter(LINE.findall(text, pos, end)))  # a check failed: say where
            return end
        if len(walk.stack) > 1:  # the walk closes the groups of the previous instance here
            walk.close_open()
            if walk.log.truncated:  # ... and stops right after this instance's first line
                first = RECORD.match(text, pos)
                assert first is not None
                self._count_run(group, 1, 1, [first[1]])
                return end
        lines_in = text.count("\n", pos, end)
        if crs:
            lines_in += text.count("\r", pos, end) - text.count("\r\n", pos, end)
        self._count_run(group, flows, lines_in, RECORD.findall(text, pos, end) if walk.checksum_add else [])
        return end

    def _count_run(self, group: GroupDefinition, flows: int, lines: int, records: list[str]) -> None:
        """Count `flows` valid instances of `group` spanning `lines` lines, as the walk would have."""
        walk = self.walk
        root = walk.stack[0]
        if group.index > root.cursor:
            root.cursor = group.index
            root.counts[group] = flows
        else:
            root.counts[group] += flows
        walk.flows += flows
        walk.groups += lines
        walk.line_number += lines
        walk.current = None  # the validation pass discards instances
        if walk.checksum_add is not None:
            for record in records:
                walk.checksum_add(record)


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
        bounds = [parent.start() for parent in found[1:]] + [end] if found else []  # an optional parent may be absent
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
    return any(candidate.index > last.index or (candidate is last and _below(count, limits[last]))
               for candidate in candidates)


def _below(count: int, limit: int | None) -> bool:
    """True when `count` instances leave room for one more under `limit` (None: no limit)."""
    return limit is None or count < limit
