"""The compiled flow definitions: what the reader, the events and the writer use of a flow's DTC facts.

Built once by the loader (bridge/dtn/definitions.py) from `flow_definitions/*.yaml`; each group carries what the
reader needs on its hot path: a regular expression per group line, which child codes may follow, and per level-1
group an expression for whole flow instances (the validation pass matches many lines with one call).
"""

from __future__ import annotations

import itertools
import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from bridge.dtn.checks import Clock
from bridge.dtn.formats import JsonValue, LogicalFormat, quoted

Presence = Literal["mandatory", "optional", "unused"]

_RANGE = re.compile(r"^\s*(?:(\d+)\s*-\s*(\d+|\*)|(\d+(?:\s*,\s*\d+)*))\s*$")
_LINE_END = r"(?:\r\n|\n|\r)"  # as a text stream opened with newline='' splits lines


@dataclass(frozen=True, slots=True)
class Cardinality:
    """How many instances of a group its parent may hold: a min-max range or a set of allowed counts."""

    text: str
    minimum: int
    maximum: int | None  # None: unbounded
    allowed: frozenset[int] | None = None  # e.g. {46, 48, 50}

    @classmethod
    def parse(cls, text: str) -> Cardinality:
        match = _RANGE.match(str(text))
        if not match:
            raise ValueError(f"{text!r} is not a range like '1', '0-1', '1-*', '46,48,50'")
        if match[3] is not None:
            counts = frozenset(int(part) for part in match[3].split(","))
            if len(counts) == 1:
                (count,) = counts
                return cls(str(text), count, count)
            return cls(str(text), min(counts), max(counts), counts)
        low = int(match[1])
        high = None if match[2] == "*" else int(match[2])
        if high is not None and high < low:
            raise ValueError(f"{text!r}: the maximum is below the minimum")
        return cls(str(text), low, high)

    def admits(self, count: int) -> bool:
        """True when `count` instances satisfy this range."""
        if self.allowed is not None:
            return count in self.allowed
        return count >= self.minimum and (self.maximum is None or count <= self.maximum)

    def has_room(self, count: int) -> bool:
        """True when one more instance than `count` can still be admitted."""
        return self.maximum is None or count < self.maximum

    def repeat(self, source: str) -> str:
        """`source` (one instance of a group) repeated as often as this range admits, as a regular expression.

        Possessive: the instances of one group are told apart from what follows by their code, so giving one back
        can never help a match, and a failing match must not backtrack through every repetition.
        """
        group = f"(?:{source})"
        if self.allowed is not None:  # 46,48,50 -> X{46}(?:X{2}(?:X{2})?+)?+
            counts = sorted(self.allowed)
            nested = ""
            for low, high in reversed(list(itertools.pairwise(counts))):
                nested = f"(?:{group}{{{high - low}}}{nested})?+"
            return f"{group}{{{counts[0]}}}{nested}"
        if self.maximum == self.minimum:
            return f"{group}{{{self.minimum}}}"
        return f"{group}{{{self.minimum},{'' if self.maximum is None else self.maximum}}}+"


@dataclass(frozen=True, slots=True)
class DataItem:
    """One data item of a group, at its position in the line."""

    ref: str | None
    key: str
    name: str
    format: LogicalFormat
    presence: Presence
    values: tuple[str, ...] | None
    position: int  # 1-based, after the group code
    checks: tuple[str, ...] = ()  # named checks beyond the format (bridge/dtn/checks.py), e.g. mpan_check_digit

    def problem(self, text: str) -> str | None:
        """Say what is wrong with this item's text in a file, or None when it is valid."""
        if not text:
            return "is mandatory but empty" if self.presence == "mandatory" else None
        if self.presence == "unused":
            return f"{quoted(text)} given, but the item is not used in this flow (DTC 'N')"
        problem = self.format.check(text)
        if problem is None and self.values is not None and text not in self.values:
            shown = ", ".join(self.values[:12]) + (", ..." if len(self.values) > 12 else "")
            problem = f"{quoted(text)} is not a valid value ({shown})"
        return problem

    def pattern(self) -> str:
        """The item's regular-expression fragment, as a capturing group."""
        return f"({self.fragment()})"

    def fragment(self) -> str:
        """The item's regular-expression fragment without a group, to match many lines at once."""
        if self.presence == "unused":
            return ""
        body = "|".join(re.escape(value) for value in self.values) if self.values else self.format.pattern
        return f"(?:{body})" if self.presence == "mandatory" else f"(?:{body})?"


@dataclass(frozen=True, slots=True)
class PeriodCheck:
    """`settlement_periods` on a half-hourly period group: its count per parent instance must fit the parent's date."""

    date_item: DataItem  # the DATE item of the parent group
    clock: Clock

    def implied_by(self, cardinality: Cardinality) -> bool:
        """True when the group's range alone already enforces the check (48 periods, UTC)."""
        return self.clock == "utc" and cardinality.allowed is None and cardinality.minimum == cardinality.maximum == 48


@dataclass(eq=False, slots=True)
class GroupDefinition:
    """One group of a flow: its items, where it may stand, and how often."""

    code: str
    key: str
    name: str
    level: int
    parent: GroupDefinition | None
    range: Cardinality
    strict_range: Cardinality
    lenient_reason: str | None
    items: tuple[DataItem, ...]
    index: int  # position in the flow's group list: siblings appear in this order
    children: list[GroupDefinition] = field(default_factory=list)
    periods: PeriodCheck | None = None  # the settlement_periods check of this group, if its definition names it
    item_checks: tuple[DataItem, ...] = ()  # the items that name a check, for the reader's hot loop
    child_codes: dict[str, tuple[GroupDefinition, ...]] = field(default_factory=dict)
    line_source: str = ""  # the line's expression without the '|' that ends a terminated line: see line_pattern
    line_patterns: dict[bool, re.Pattern[str]] = field(default_factory=dict)  # compiled on first use, by terminated
    # level-1 groups only, by (terminated, strict), compiled on first use: see FlowDefinition.instance_pattern
    instance_patterns: dict[tuple[bool, bool], re.Pattern[str] | None] = field(default_factory=dict)
    # for building events: each item's key and converter (None: the text as written); at most one per parent?
    json_items: tuple[tuple[str, Callable[[str], JsonValue] | None], ...] = ()
    json_keys: frozenset[str] = frozenset()  # the keys its event object may hold: item keys and child group keys
    single: bool = False

    def compile(self) -> None:
        """Build the lookups and the line expressions the reader uses on every line, and the event conversions."""
        self.json_items = tuple((item.key, item.format.to_json if item.format.converts else None)
                                for item in self.items)
        self.json_keys = frozenset(item.key for item in self.items) | {child.key for child in self.children}
        self.item_checks = tuple(item for item in self.items if item.checks)
        self.single = self.strict_range.maximum == 1 and self.range.maximum == 1
        by_code: dict[str, list[GroupDefinition]] = {}
        for child in self.children:
            by_code.setdefault(child.code, []).append(child)
        self.child_codes = {code: tuple(defs) for code, defs in by_code.items()}
        self.line_source = re.escape(self.code) + "".join("\\|" + item.pattern() for item in self.items)

    def line_pattern(self, terminated: bool) -> re.Pattern[str]:
        """The expression a line of this group must match whole, compiled on first use: the DTC has 200+ flows, a
        file uses one line style, and compiling them all up front tripled the time to load every definition."""
        pattern = self.line_patterns.get(terminated)
        if pattern is None:
            pattern = self.line_patterns[terminated] = re.compile(self.line_source + ("\\|" if terminated else ""))
        return pattern

    def range_for(self, strict: bool) -> Cardinality:
        return self.strict_range if strict else self.range

    def instance_source(self, terminated: bool, strict: bool) -> str:
        """One instance of this group as a regular expression: its line (with its line end), then its child groups in
        definition order, each as often as its range admits. `terminated`: lines end with '|', as the header does."""
        line = (re.escape(self.code) + "".join("\\|" + item.fragment() for item in self.items)
                + ("\\|" if terminated else "") + _LINE_END)
        return line + "".join(child.range_for(strict).repeat(child.instance_source(terminated, strict))
                              for child in self.children)

    def descendants(self) -> Iterator[GroupDefinition]:
        for child in self.children:
            yield child
            yield from child.descendants()


@dataclass(eq=False, slots=True)
class FlowDefinition:
    """A flow version from the DTC, e.g. D0010 v002, compiled for reading and writing."""

    flow: str
    version: str
    name: str
    groups: tuple[GroupDefinition, ...]
    path: Path
    ownership: str | None = None
    description: str | None = None
    routes: tuple[tuple[str, str], ...] = ()
    root: GroupDefinition | None = None  # the invisible parent of level-1 groups
    # Where a flow instance may end: a line end before a level-1 code or ZPT. None when the flow cannot be read by
    # whole instances (a level-1 code also stands deeper, so a code alone does not say where an instance starts).
    boundary: re.Pattern[str] | None = None
    boundary_codes: tuple[str, ...] = ()  # the level-1 codes and ZPT
    # Every group by its code, when no code stands twice in the flow (a code then says where a line belongs): the
    # reader's pass over a file already found valid places lines by it. None otherwise.
    group_by_code: dict[str, GroupDefinition] | None = None

    def compile_instances(self) -> None:
        """Find where instances may be cut and which level-1 groups whole-instance expressions can match (compiled
        on first use by `instance_pattern`).

        A group whose subtree repeats a code gets none: the reader places such a line by the DTC's nearest-open-
        group rule, which one expression cannot follow, so those instances are read line by line.
        """
        assert self.root is not None
        by_code = {group.code: group for group in self.groups}
        self.group_by_code = by_code if len(by_code) == len(self.groups) else None
        level1 = self.root.children
        codes = sorted({group.code for group in level1})
        deeper = {group.code for group in self.groups if group.level > 1}
        if deeper & set(codes):
            return
        self.boundary_codes = (*codes, "ZPT")
        self.boundary = re.compile(f"[\\r\\n](?={self._boundary_ahead()})")
        for group in level1:
            below = [child.code for child in group.descendants()]
            if len(below) != len(set(below)):
                group.instance_patterns.update({(terminated, strict): None for terminated in (True, False)
                                                for strict in (True, False)})

    def _boundary_ahead(self) -> str:
        return "|".join(re.escape(code) for code in self.boundary_codes)

    def instance_pattern(self, group: GroupDefinition, terminated: bool, strict: bool) -> re.Pattern[str] | None:
        """The expression the validation pass matches whole instances of level-1 `group` with, or None when its
        instances are read line by line. It ends each instance with a look-ahead for the next instance (or ZPT, or
        the end of the text), so that it matches a whole span between boundaries or nothing; for a group without a
        maximum it matches a run of consecutive instances."""
        key = (terminated, strict)
        if key not in group.instance_patterns:
            one = f"{group.instance_source(terminated, strict)}(?=(?:{self._boundary_ahead()})|\\Z)"
            run = group.range_for(strict).maximum is None
            try:
                group.instance_patterns[key] = re.compile(f"(?:{one})++" if run else one)
            except (re.error, RecursionError, OverflowError):  # too deep or too big for `re`: read line by line,
                group.instance_patterns[key] = None  # which gives the same outcome
        return group.instance_patterns[key]

    @property
    def reference(self) -> str:
        """The ZHV 'Data Flow Reference and Version' (J0937), e.g. D0010002."""
        return self.flow + self.version

    @property
    def event_type(self) -> str:
        """The CloudEvents type of this flow's events, e.g. uk.dtc.D0010.v002."""
        return f"uk.dtc.{self.flow}.v{self.version}"

    @property
    def level1(self) -> list[GroupDefinition]:
        assert self.root is not None
        return self.root.children

    def group(self, key: str) -> GroupDefinition:
        for group in self.groups:
            if group.key == key:
                return group
        raise KeyError(key)
