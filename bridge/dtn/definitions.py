"""Flow definitions: `flow_definitions/*.yaml` -> compiled, validated `FlowDefinition` objects.

The YAML holds the DTC facts (docs/flow-definitions.md); this module checks them against a schema once, at load,
with errors that name the file and the key, and compiles what the reader needs on its hot path: a regular
expression per group line, per group which child codes may follow, and per level-1 group an expression for whole flow
instances (the validation pass matches many lines with one call).
"""

from __future__ import annotations

import itertools
import re
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, NamedTuple

import yaml

from bridge.dtn.checks import CLOCKS, GROUP_CHECKS, ITEM_CHECKS, MPAN_CHECK_DIGIT, SETTLEMENT_PERIODS, Clock
from bridge.dtn.formats import FormatSyntaxError, JsonValue, LogicalFormat, quoted
from bridge.errors import FlowDefinitionError

Presence = Literal["mandatory", "optional", "unused"]

_FLOW = re.compile(r"^[A-Z][A-Z0-9]{4}$")
_REFERENCE = re.compile(r"^[A-Z][A-Z0-9]{4}[0-9]{3}$")
_YAML_LOADER = getattr(yaml, "CSafeLoader", yaml.SafeLoader)  # libyaml: 10 times faster, the same documents
_VERSION = re.compile(r"^[0-9]{3}$")
_CODE = re.compile(r"^[A-Z0-9]{3}$")
_KEY = re.compile(r"^[a-z][a-z0-9_]*$")
_REF = re.compile(r"^J[0-9]{4}$")
_RANGE = re.compile(r"^\s*(?:(\d+)\s*-\s*(\d+|\*)|(\d+(?:\s*,\s*\d+)*))\s*$")
_PRESENCE = ("mandatory", "optional", "unused")
_TOP_KEYS = {"flow", "version", "name", "ownership", "description", "source", "routes", "groups"}
_GROUP_KEYS = {"code", "key", "name", "parent", "range", "lenient_range", "lenient_reason", "items", "note",
               "checks"}
_ITEM_KEYS = {"ref", "key", "name", "format", "presence", "values", "note", "checks"}
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
    line_patterns: dict[bool, re.Pattern[str]] = field(default_factory=dict)
    # level-1 groups only, by (terminated, strict): see FlowDefinition.compile_instances
    instance_patterns: dict[tuple[bool, bool], re.Pattern[str]] = field(default_factory=dict)
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
        body = re.escape(self.code) + "".join("\\|" + item.pattern() for item in self.items)
        self.line_patterns = {True: re.compile(body + "\\|"), False: re.compile(body)}

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
        """Compile, per level-1 group, the expression the validation pass matches whole instances with.

        A group whose subtree repeats a code gets none: the reader places such a line by the DTC's nearest-open-
        group rule, which one expression cannot follow, so those instances are read line by line. The expression
        ends each instance with a look-ahead for the next instance (or ZPT, or the end of the text), so that it
        matches a whole span between boundaries or nothing; for a level-1 group without a maximum it matches a run
        of consecutive instances.
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
        ahead = "|".join(re.escape(code) for code in self.boundary_codes)
        self.boundary = re.compile(f"[\\r\\n](?={ahead})")
        for group in level1:
            below = [child.code for child in group.descendants()]
            if len(below) != len(set(below)):
                continue
            for terminated in (True, False):
                for strict in (True, False):
                    one = f"{group.instance_source(terminated, strict)}(?=(?:{ahead})|\\Z)"
                    run = group.range_for(strict).maximum is None
                    group.instance_patterns[terminated, strict] = re.compile(f"(?:{one})++" if run else one)

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


class DefinitionSet(Mapping[str, FlowDefinition]):
    """All flow definitions, by reference (D0010002).

    Each is read and compiled on first use: the DTC has 200+ flow versions, compiling them all takes seconds, and a
    command or a worker uses a few. A definition that does not load raises FlowDefinitionError on that first use.
    """

    def __init__(self, definitions: Mapping[str, FlowDefinition | Path]) -> None:
        self._definitions: dict[str, FlowDefinition | Path] = dict(sorted(definitions.items()))

    def __getitem__(self, reference: str) -> FlowDefinition:
        entry = self._definitions[reference]
        if isinstance(entry, Path):
            entry = load_definition(entry)
            if entry.reference != reference:
                raise FlowDefinitionError(entry.path.name, "", f"the file must be named {entry.reference}.yaml")
            self._definitions[reference] = entry
        return entry

    def __iter__(self) -> Iterator[str]:
        return iter(self._definitions)

    def __len__(self) -> int:
        return len(self._definitions)

    def by_event_type(self, event_type: str) -> FlowDefinition | None:
        """The definition whose events carry `event_type` (uk.dtc.D0010.v002), or None."""
        match = re.fullmatch(r"uk\.dtc\.([A-Z][A-Z0-9]{4})\.v([0-9]{3})", event_type)
        return self.get(match[1] + match[2]) if match else None

    def outline(self, reference: str) -> FlowOutline:
        """Name, number of groups and levels, routes: what listings and routing need, read without compiling."""
        entry = self._definitions[reference]
        if isinstance(entry, FlowDefinition):
            return FlowOutline(entry.name, len(entry.groups), max(group.level for group in entry.groups),
                               entry.routes)
        document = _read_yaml(entry)
        try:
            depth: dict[Any, int] = {None: 0}
            for group in document["groups"]:
                depth[group["key"]] = depth[group["parent"]] + 1
            routes = tuple((str(route["from"]), str(route["to"])) for route in document.get("routes") or ())
            return FlowOutline(str(document["name"]), len(document["groups"]), max(depth.values()), routes)
        except (KeyError, TypeError, AttributeError) as exc:
            raise FlowDefinitionError(entry.name, "", "not a definition with a name, groups (keys, parents) and "
                                      "routes (from, to)") from exc


class FlowOutline(NamedTuple):
    """A definition's summary, read without compiling it."""

    name: str
    groups: int
    levels: int
    routes: tuple[tuple[str, str], ...]


def default_definitions_dir() -> Path:
    """`flow_definitions/` of this checkout (or of the installed package's source tree)."""
    return Path(__file__).resolve().parents[2] / "flow_definitions"


def load_definitions(folder: str | Path | None = None) -> DefinitionSet:
    """Every `<flow><version>.yaml` in `folder`, each loaded and validated on first use (FlowDefinitionError names
    the file and key); a file named otherwise is an error now."""
    directory = Path(folder) if folder is not None else default_definitions_dir()
    if not directory.is_dir():
        raise FlowDefinitionError(str(directory), "", "no such folder of flow definitions")
    definitions: dict[str, FlowDefinition | Path] = {}
    for path in sorted(directory.glob("*.yaml")):
        if not _REFERENCE.match(path.stem):
            raise FlowDefinitionError(path.name, "", "the file must be named <flow><version>.yaml, e.g. D0010002.yaml")
        definitions[path.stem] = path
    return DefinitionSet(definitions)


def _read_yaml(path: Path) -> Any:
    try:
        return yaml.load(path.read_text(encoding="utf-8"), Loader=_YAML_LOADER)
    except yaml.YAMLError as exc:
        raise FlowDefinitionError(path.name, "", f"not valid YAML: {exc}") from exc
    except OSError as exc:
        raise FlowDefinitionError(str(path), "", f"cannot be read: {exc.strerror}") from exc


def load_definition(path: Path) -> FlowDefinition:
    """Load one definition file."""
    return _Compiler(path).flow(_read_yaml(path))


class _Compiler:
    """Checks one YAML document against the schema and builds the definition; errors name the key."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def fail(self, key: str, message: str) -> FlowDefinitionError:
        return FlowDefinitionError(self.path.name, key, message)

    def mapping(self, value: Any, key: str, allowed: set[str], required: set[str]) -> dict[str, Any]:
        if not isinstance(value, dict):
            raise self.fail(key or "(document)", "must be a mapping")
        for name in value:
            if name not in allowed:
                raise self.fail(f"{key}.{name}" if key else str(name), "unknown key")
        for name in sorted(required):
            if name not in value or value[name] is None and name != "parent":
                raise self.fail(f"{key}.{name}" if key else name, "is required")
        return value

    def text(self, value: Any, key: str, pattern: re.Pattern[str] | None = None, what: str = "") -> str:
        if not isinstance(value, str) or not value.strip():
            raise self.fail(key, f"must be a non-empty string, not {value!r}")
        if pattern is not None and not pattern.match(value):
            raise self.fail(key, f"{value!r} is not {what}")
        return value

    def flow(self, document: Any) -> FlowDefinition:
        top = self.mapping(document, "", _TOP_KEYS, {"flow", "version", "name", "groups"})
        flow = self.text(top["flow"], "flow", _FLOW, "a flow reference like D0010")
        version = self.text(top["version"], "version", _VERSION, "a 3-digit version like '002' (quote it)")
        routes = self.routes(top.get("routes"))
        groups_doc = top["groups"]
        if not isinstance(groups_doc, list) or not groups_doc:
            raise self.fail("groups", "must be a non-empty list")
        root = GroupDefinition("", "", "(file)", 0, None, Cardinality("1", 1, 1), Cardinality("1", 1, 1), None, (), -1)
        by_key: dict[str, GroupDefinition] = {}
        groups = [self.group(doc, f"groups[{index}]", index, root, by_key) for index, doc in enumerate(groups_doc)]
        for group in [root, *groups]:
            group.compile()
        definition = FlowDefinition(flow, version, self.text(top["name"], "name"), tuple(groups), self.path,
                                    top.get("ownership"), top.get("description"), routes, root)
        definition.compile_instances()
        return definition

    def routes(self, value: Any) -> tuple[tuple[str, str], ...]:
        if value is None:
            return ()
        if not isinstance(value, list):
            raise self.fail("routes", "must be a list of {from: ROLE, to: ROLE}")
        routes = []
        for index, route in enumerate(value):
            entry = self.mapping(route, f"routes[{index}]", {"from", "to", "note"}, {"from", "to"})
            routes.append((str(entry["from"]), str(entry["to"])))
        return tuple(routes)

    def group(self, doc: Any, key: str, index: int, root: GroupDefinition,
              by_key: dict[str, GroupDefinition]) -> GroupDefinition:
        entry = self.mapping(doc, key, _GROUP_KEYS, {"code", "key", "name", "parent", "range", "items"})
        code = self.text(entry["code"], f"{key}.code", _CODE, "a 3-character group code (quote numeric codes)")
        if code in ("ZHV", "ZHD", "ZPT"):
            raise self.fail(f"{key}.code", f"{code} is the file envelope, not a group")
        group_key = self.text(entry["key"], f"{key}.key", _KEY, "a snake_case key")
        if group_key in by_key:
            raise self.fail(f"{key}.key", f"{group_key!r} is already the key of another group")
        parent_key = entry["parent"]
        if parent_key is None:
            parent = root
        elif parent_key not in by_key:
            raise self.fail(f"{key}.parent", f"{parent_key!r} is not the key of an earlier group")
        else:
            parent = by_key[parent_key]
        strict_range = self.cardinality(entry["range"], f"{key}.range")
        lenient = entry.get("lenient_range")
        relaxed = strict_range if lenient is None else self.cardinality(lenient, f"{key}.lenient_range")
        if lenient is not None and not entry.get("lenient_reason"):
            raise self.fail(f"{key}.lenient_reason", "is required with lenient_range: say what real files do")
        items_doc = entry["items"]
        if not isinstance(items_doc, list):
            raise self.fail(f"{key}.items", "must be a list")
        items = tuple(self.item(item, f"{key}.items[{n}]", n + 1) for n, item in enumerate(items_doc))
        seen: set[str] = set()
        for n, item in enumerate(items):
            if item.key in seen:
                raise self.fail(f"{key}.items[{n}].key", f"{item.key!r} is used twice in the group")
            seen.add(item.key)
        group = GroupDefinition(code, group_key, self.text(entry["name"], f"{key}.name"), parent.level + 1, parent,
                                relaxed, strict_range, entry.get("lenient_reason"), items, index,
                                periods=self.group_checks(entry.get("checks"), f"{key}.checks", parent))
        siblings = {child.key for child in parent.children} | {item.key for item in parent.items}
        if group_key in siblings:
            raise self.fail(f"{key}.key", f"{group_key!r} clashes with an item or group of the parent")
        parent.children.append(group)
        by_key[group_key] = group
        return group

    def group_checks(self, value: Any, key: str, parent: GroupDefinition) -> PeriodCheck | None:
        """`checks: [{name: settlement_periods, date_item: <a DATE item of the parent>, clock: local|utc}]`."""
        if value is None:
            return None
        if not isinstance(value, list):
            raise self.fail(key, "must be a list of checks")
        periods = None
        for n, doc in enumerate(value):
            entry = self.mapping(doc, f"{key}[{n}]", {"name", "date_item", "clock"}, {"name", "date_item", "clock"})
            if entry["name"] != SETTLEMENT_PERIODS:
                raise self.fail(f"{key}[{n}].name", f"{entry['name']!r} is not a group check "
                                f"({', '.join(GROUP_CHECKS)})")
            dates = {item.key: item for item in parent.items if item.format.kind == "DATE"}
            if entry["date_item"] not in dates:
                raise self.fail(f"{key}[{n}].date_item", f"{entry['date_item']!r} is not a DATE item of the parent "
                                f"group ({', '.join(dates) or 'it has none'})")
            if entry["clock"] not in CLOCKS:
                raise self.fail(f"{key}[{n}].clock", f"{entry['clock']!r} is not one of {', '.join(CLOCKS)}")
            if periods is not None:
                raise self.fail(f"{key}[{n}]", f"{SETTLEMENT_PERIODS} is named twice")
            periods = PeriodCheck(dates[entry["date_item"]], entry["clock"])
        return periods

    def item_checks(self, value: Any, key: str, logical: LogicalFormat) -> tuple[str, ...]:
        """`checks: [mpan_check_digit]`: known names, each on an item whose format can hold what it checks."""
        if value is None:
            return ()
        if not isinstance(value, list) or not all(isinstance(name, str) for name in value):
            raise self.fail(key, "must be a list of check names")
        for n, name in enumerate(value):
            if name not in ITEM_CHECKS:
                raise self.fail(f"{key}[{n}]", f"{name!r} is not an item check ({', '.join(ITEM_CHECKS)})")
            shape = (logical.kind, logical.length, logical.scale, logical.signed)
            if name == MPAN_CHECK_DIGIT and shape != ("NUM", 13, 0, False):
                raise self.fail(f"{key}[{n}]", f"{name} needs an item of format NUM(13), not {logical.text}")
        return tuple(dict.fromkeys(value))

    def cardinality(self, value: Any, key: str) -> Cardinality:
        try:
            return Cardinality.parse(str(value))
        except ValueError as exc:
            raise self.fail(key, str(exc)) from exc

    def item(self, doc: Any, key: str, position: int) -> DataItem:
        entry = self.mapping(doc, key, _ITEM_KEYS, {"key", "name", "format", "presence"})
        ref = entry.get("ref")
        if ref is not None:
            self.text(ref, f"{key}.ref", _REF, "a DTC data item reference like J0003")
        elif not entry.get("note"):
            raise self.fail(f"{key}.ref", "is required (null only for items outside the DTC, with a note saying so)")
        try:
            logical = LogicalFormat.parse(str(entry["format"]))
        except FormatSyntaxError as exc:
            raise self.fail(f"{key}.format", str(exc)) from exc
        presence = entry["presence"]
        if presence not in _PRESENCE:
            raise self.fail(f"{key}.presence", f"{presence!r} is not one of {', '.join(_PRESENCE)}")
        values = self.valid_set(entry.get("values"), f"{key}.values", logical)
        return DataItem(ref, self.text(entry["key"], f"{key}.key", _KEY, "a snake_case key"),
                        self.text(entry["name"], f"{key}.name"), logical, presence, values, position,
                        self.item_checks(entry.get("checks"), f"{key}.checks", logical))

    def valid_set(self, value: Any, key: str, logical: LogicalFormat) -> tuple[str, ...] | None:
        if value is None:
            return None
        if isinstance(value, dict):
            codes = list(value)
        elif isinstance(value, list):
            codes = value
        else:
            raise self.fail(key, "must be a list of values or a mapping of value to meaning")
        texts = []
        for code in codes:
            if not isinstance(code, str):
                raise self.fail(key, f"{code!r} must be quoted: valid values are texts ('01', not 01)")
            text = code
            problem = logical.check(text)
            if problem:
                raise self.fail(key, f"valid value {problem} for {logical.text}")
            texts.append(text)
        if not texts:
            raise self.fail(key, "must not be empty")
        return tuple(texts)
