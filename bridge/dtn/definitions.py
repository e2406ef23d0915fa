"""Flow definitions: `flow_definitions/*.yaml` -> compiled, validated `FlowDefinition` objects (bridge/dtn/compiled.py).

The YAML holds the DTC facts (docs/flow-definitions.md); this module finds the files, checks each against a schema
once, at load, with errors that name the file and the key, and compiles it into the model the reader uses.

The definitions ship inside the package (`bridge/flow_definitions`, read through importlib.resources: in a checkout
a link to the repository's `flow_definitions/`, in a wheel the files themselves), so an installed bridge reads
nothing from a checkout; folders given by `flows.definitions` or `--definitions` add definitions over them.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterable, Iterator, Mapping
from importlib.resources import files
from pathlib import Path
from typing import Any, NamedTuple

import yaml

from bridge.dtn.checks import CLOCKS, GROUP_CHECKS, ITEM_CHECKS, MPAN_CHECK_DIGIT, SETTLEMENT_PERIODS
from bridge.dtn.compiled import Cardinality, DataItem, FlowDefinition, GroupDefinition, PeriodCheck
from bridge.dtn.formats import FormatSyntaxError, LogicalFormat
from bridge.errors import FlowDefinitionError

_FLOW = re.compile(r"^[A-Z][A-Z0-9]{4}$")
_REFERENCE = re.compile(r"^[A-Z][A-Z0-9]{4}[0-9]{3}$")
#: How rules, and the broker's participants file, name flows: a flow (D0010, every version) or a version (D0010002).
FLOW_SELECTOR = re.compile(r"[A-Z][A-Z0-9]{4}(?:[0-9]{3})?")
_YAML_LOADER = getattr(yaml, "CSafeLoader", yaml.SafeLoader)  # libyaml: 10 times faster, the same documents
_VERSION = re.compile(r"^[0-9]{3}$")
_CODE = re.compile(r"^[A-Z0-9]{3}$")
_KEY = re.compile(r"^[a-z][a-z0-9_]*$")
_REF = re.compile(r"^J[0-9]{4}$")
_PRESENCE = ("mandatory", "optional", "unused")
_TOP_KEYS = {"flow", "version", "name", "ownership", "description", "source", "routes", "groups"}
_GROUP_KEYS = {"code", "key", "name", "parent", "range", "lenient_range", "lenient_reason", "items", "note",
               "checks"}
_ITEM_KEYS = {"ref", "key", "name", "format", "presence", "values", "note", "checks"}


class DefinitionSet(Mapping[str, FlowDefinition]):
    """All flow definitions, by reference (D0010002).

    Each is read and compiled on first use: the DTC has 200+ flow versions, reading them all takes a second, and a
    command or a worker uses a few. A definition that does not load raises FlowDefinitionError on that first use.
    """

    def __init__(self, definitions: Mapping[str, FlowDefinition | Path]) -> None:
        self._definitions: dict[str, FlowDefinition | Path] = dict(sorted(definitions.items()))
        self._outlines: dict[str, FlowOutline] = {}  # read once: every rules parse (start, reload) asks for all

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

    def path_of(self, reference: str) -> Path:
        """The file the definition of `reference` comes from (shipped, or a folder over the shipped ones)."""
        entry = self._definitions[reference]
        return entry if isinstance(entry, Path) else entry.path

    def by_event_type(self, event_type: str) -> FlowDefinition | None:
        """The definition whose events carry `event_type` (uk.dtc.D0010.v002), or None."""
        match = re.fullmatch(r"uk\.dtc\.([A-Z][A-Z0-9]{4})\.v([0-9]{3})", event_type)
        return self.get(match[1] + match[2]) if match else None

    def outline(self, reference: str) -> FlowOutline:
        """Name, number of groups and levels, routes: what listings and routing need, read without compiling."""
        known = self._outlines.get(reference)
        if known is None:
            known = self._outlines[reference] = self._outline(reference)
        return known

    def _outline(self, reference: str) -> FlowOutline:
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
    """The definitions shipped in the package (`bridge/flow_definitions`), wherever the package is installed."""
    shipped = files("bridge") / "flow_definitions"
    if not isinstance(shipped, Path) or not shipped.is_dir():  # a wheel installs files; a zip import has none
        raise FlowDefinitionError(str(shipped), "", "the shipped flow definitions are missing from the installed "
                                  "package (reinstall dtn-bridge)")
    return shipped.resolve()  # in a checkout: the repository's flow_definitions/ itself


def load_definitions(folders: str | os.PathLike[str] | Iterable[str | os.PathLike[str]] | None = None
                     ) -> DefinitionSet:
    """The shipped definitions and, over them, every `<flow><version>.yaml` of `folders` (one folder or several;
    for a flow version in more than one, the first folder given wins), each loaded and validated on first use
    (FlowDefinitionError names the file and key); a file named otherwise, or a missing folder, is an error now."""
    if folders is None:
        extra: list[Path] = []
    elif isinstance(folders, (str, os.PathLike)):
        extra = [Path(folders)]
    else:
        extra = [Path(folder) for folder in folders]
    definitions: dict[str, FlowDefinition | Path] = {}
    for directory in [default_definitions_dir(), *reversed(extra)]:  # later updates win: the first folder last
        definitions.update(_folder(directory))
    return DefinitionSet(definitions)


def _folder(directory: Path) -> dict[str, Path]:
    if not directory.is_dir():
        raise FlowDefinitionError(str(directory), "", "no such folder of flow definitions")
    found: dict[str, Path] = {}
    for path in sorted(directory.glob("*.yaml")):
        if not _REFERENCE.match(path.stem):
            raise FlowDefinitionError(path.name, "", "the file must be named <flow><version>.yaml, e.g. D0010002.yaml")
        found[path.stem] = path
    return found


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
