"""The DTC catalogue -> flow definitions: the pure half of `dtn-bridge definitions import`.

The DTC's Word documents are tables (shared/reference/dtc-documents.md); an adapter reads them into rows of cell
texts, and this module turns those rows into one definition document per operational flow version, in the YAML
schema of docs/flow-definitions.md. What the project knows beyond the catalogue (better keys, notes, lenient ranges,
checks, formats the catalogue leaves blank) lives in curated overlays that `apply_overlay` merges over the generated
document, so a re-import of the next release keeps it. Output is deterministic: the same documents and overlays
always give the same bytes.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import yaml

from bridge.dtn.definitions import Cardinality
from bridge.dtn.formats import FormatSyntaxError, LogicalFormat
from bridge.errors import CatalogueError

Table = Sequence[Sequence[str]]
Document = dict[str, Any]

_PRESENCE = {"1": "mandatory", "O": "optional", "N": "unused"}
# Role names of the DTC -> the MDD role codes of file headers (docs/flow-roles.md); None: the code is uncertain.
ROLE_CODES: Mapping[str, tuple[str, str | None]] = {
    "Supplier": ("X", None),
    "Distributor": ("R", None),
    "MOP": ("M", None),
    "HHDC": ("C", None),
    "NHHDC": ("D", None),
    "HHDA": ("A", "HHDA = A is an uncertain mapping (docs/flow-roles.md)"),
    "NHHDA": ("B", "NHHDA = B is an uncertain mapping (docs/flow-roles.md)"),
    "MPAS": ("P", "MPAS = P is an uncertain mapping (docs/flow-roles.md)"),
    "SVAA": ("G", "SVAA = G is an uncertain mapping (docs/flow-roles.md)"),
}
MPAN_CORE = "J0003"
# Text longer than any DTC item, for items whose format the catalogue leaves blank everywhere.
BLANK_FORMAT = "CHAR(255)"
BLANK_NOTE = ("Format blank in DTC {release} (item catalogue, flow table and domain); the importer accepts any text "
              "up to 255 characters. A curated overlay may give the real format.")
_VALUE_LINE = re.compile(r"^\s*([A-Za-z0-9][A-Za-z0-9 ]{0,9}?)\s*[-\u2013=]\s+(\S.*?)\s*$")


@dataclass(frozen=True, slots=True)
class CatalogueItem:
    """One block of the Data Item Catalogue."""

    ref: str
    name: str
    valid_set: tuple[str, ...]
    domain: str
    logical_format: str
    physical_length: str


@dataclass(slots=True)
class CatalogueGroup:
    """A group row of a flow table and the item rows under it."""

    code: str
    name: str
    range: str
    condition: str
    level: int
    parent: int | None  # index of the parent group in the flow's list
    items: list[tuple[str, str, str, str]] = field(default_factory=list)  # (ref, name, presence, printed format)


@dataclass(slots=True)
class CatalogueFlow:
    """One flow version of the Data Flow Catalogue."""

    flow: str
    version: str
    status: str
    name: str = ""
    description: str = ""
    ownership: str = ""
    release: str = ""
    routes: list[tuple[str, str]] = field(default_factory=list)
    groups: list[CatalogueGroup] = field(default_factory=list)

    @property
    def reference(self) -> str:
        return self.flow + self.version


@dataclass(slots=True)
class ImportResult:
    """What an import produced: definition documents by reference, and what it could not read."""

    documents: dict[str, Document]
    skipped: dict[str, str]  # reference -> why
    release: str


# -- reading the tables ----------------------------------------------------------------------------------------


def _c1(match: re.Match[str]) -> str:
    """Word sometimes keeps Windows-1252 quotes as C1 controls (U+0092 for an apostrophe), which YAML refuses."""
    return bytes([ord(match[0])]).decode("cp1252", errors="replace")


def _clean(text: str) -> str:
    return " ".join(re.sub("[\u0080-\u009f]", _c1, text).replace("\u00a0", " ").split())


def _labelled(table: Table) -> dict[str, list[str]]:
    """A two-column block (`Label:` | value, continuation rows with an empty label) -> label -> values."""
    block: dict[str, list[str]] = {}
    label = ""
    for row in table:
        if len(row) < 2:
            continue
        if row[0].strip():
            label = _clean(row[0]).rstrip(":")
        if label:
            block.setdefault(label, []).append(row[1].strip())
    return block


def _blocks(tables: Iterable[Table], first: str) -> Iterator[dict[str, list[str]]]:
    """The labelled blocks whose first label is `first` (`Item Name:`, `Domain Name:`)."""
    for table in tables:
        if table and table[0] and _clean(table[0][0]) == first:
            yield _labelled(table)


def _text(block: Mapping[str, list[str]], label: str) -> str:
    return _clean(" ".join(block.get(label, [])))


def read_items(tables: Iterable[Table]) -> dict[str, CatalogueItem]:
    """The Data Item Catalogue's item blocks, by J reference."""
    items: dict[str, CatalogueItem] = {}
    for block in _blocks(tables, "Item Name:"):
        ref = _text(block, "Item Reference")
        if re.fullmatch(r"J[0-9]{4}", ref):
            valid_set = tuple(_clean(line) for line in block.get("Valid Set", []) if _clean(line))
            items[ref] = CatalogueItem(ref, _text(block, "Item Name"), valid_set, _text(block, "Domain"),
                                       _text(block, "Logical Format"), _text(block, "Physical Length"))
    return items


def read_domains(tables: Iterable[Table]) -> dict[str, str]:
    """The Domains document: domain name -> its logical format as printed (`DATE`, `CHAR(n)`, ...)."""
    return {_text(block, "Domain Name"): _text(block, "Logical Format") for block in _blocks(tables, "Domain Name:")}


def read_flows(tables: Iterable[Table]) -> list[CatalogueFlow]:
    """The Data Flow Catalogue: one run of tables per flow version, started by `Flow Reference:`."""
    flows: list[CatalogueFlow] = []
    current: CatalogueFlow | None = None
    for table in tables:
        if not table or not table[0]:
            continue
        head = _clean(table[0][0])
        if head == "Flow Reference:" and len(table) >= 2:
            version_row = table[1]
            status = _clean(version_row[2]) if len(version_row) > 2 else ""
            current = CatalogueFlow(_clean(table[0][1]), _clean(version_row[1]),
                                    status.removeprefix("Status:").strip())
            flows.append(current)
        elif current is None:
            continue
        elif head == "Flow Name:":
            block = _labelled(table)
            current.name = _text(block, "Flow Name")
            current.description = _text(block, "Flow Description")
            current.ownership = _text(block, "Flow Ownership")
        elif head == "From" and len(table[0]) >= 3 and _clean(table[0][2]) == "Version":
            for row in table[1:]:
                current.routes.append((_clean(row[0]), _clean(row[1])))
                current.release = current.release or _clean(row[2])
        elif head == "Group":
            current.groups = _read_structure(current.reference, table)
    return flows


def _read_structure(reference: str, table: Table) -> list[CatalogueGroup]:
    """Group and item rows -> groups; a group's parent is the nearest group above it one level shallower."""
    header = [_clean(cell) for cell in table[0]]
    try:
        levels = [header.index(f"L{n}") for n in range(1, 9)]
        ref_col, name_col, format_col = (header.index(name) for name in ("Item Reference", "Item Name", "Format"))
    except ValueError as exc:
        raise CatalogueError(f"{reference}: the structure table lacks a column ({exc})") from exc
    groups: list[CatalogueGroup] = []
    open_at: dict[int, int] = {}  # level -> index of the group open there
    for number, row in enumerate(table[1:], start=2):
        marks = [(depth + 1, _clean(row[column])) for depth, column in enumerate(levels) if _clean(row[column])]
        code = _clean(row[0])
        if code:
            if len(marks) != 1 or marks[0][1] != "G":
                raise CatalogueError(f"{reference}: row {number}: group {code} has no single G level mark")
            level = marks[0][0]
            parent = open_at.get(level - 1) if level > 1 else None
            if level > 1 and parent is None:
                raise CatalogueError(f"{reference}: row {number}: group {code} at level {level} has no parent")
            groups.append(CatalogueGroup(code, _clean(row[1]), re.sub(r"\s+", "", row[2]), _clean(row[3]), level,
                                         parent))
            open_at = {depth: index for depth, index in open_at.items() if depth < level}
            open_at[level] = len(groups) - 1
            continue
        ref = _clean(row[ref_col])
        if not ref:
            continue
        if not groups or len(marks) != 1:
            raise CatalogueError(f"{reference}: row {number}: item {ref} has no group or no single presence mark")
        depth, mark = marks[0]
        owner = open_at.get(depth - 1)
        if owner is None:
            raise CatalogueError(f"{reference}: row {number}: item {ref} at level {depth} has no group above it")
        if mark not in _PRESENCE:
            raise CatalogueError(f"{reference}: row {number}: item {ref} has presence mark {mark!r}")
        groups[owner].items.append((ref, _clean(row[name_col]), _PRESENCE[mark], _clean(row[format_col])))
    return groups


# -- building definitions ----------------------------------------------------------------------------------------


def snake(name: str, fallback: str) -> str:
    """A snake_case key from a DTC name: stable (the same name always gives the same key) and loader-valid."""
    text = re.sub(r"&", " and ", name.lower())
    text = re.sub(r"[^a-z0-9]+", "_", text).strip("_")
    if not text:
        return fallback
    return text if text[0].isalpha() else f"n_{text}"


def unique(key: str, taken: set[str], suffix: str = "") -> str:
    """`key`, or `key_<suffix>`, or `key_2`, `key_3`, ...: the first not in `taken` (which it then joins)."""
    candidates = [key] + ([f"{key}_{suffix}"] if suffix else [])
    candidates += [f"{key}_{n}" for n in range(2, 1000)]
    for candidate in candidates:
        if candidate not in taken:
            taken.add(candidate)
            return candidate
    raise CatalogueError(f"no unique key for {key!r}")


def normalise_format(text: str) -> str | None:
    """A format as the catalogue prints it (`NUM(9 ,1)`, `DATE(0)`, `± NUM(n,m)`) -> ours, or None if unusable."""
    compact = re.sub(r"\s+", "", text).replace("+/-", "±")
    if not compact or compact.startswith("("):
        return None
    compact = re.sub(r"^(DATE|DATETIME|TIME|BOOLEAN)\(\d+\)$", r"\1", compact)
    compact = {"TIMESTAMP": "DATETIME"}.get(compact, compact)
    compact = re.sub(r"^±(CHAR|INT)", r"\1", compact)  # a sign on text or integers is not a DTC format of ours
    try:
        return LogicalFormat.parse(compact).text
    except FormatSyntaxError:
        return None


def item_format(ref: str, printed: str, catalogue: Mapping[str, CatalogueItem], domains: Mapping[str, str],
                known: Mapping[str, tuple[str, str | None]], release: str) -> tuple[str, str | None]:
    """An item's format and, where it is not the item catalogue's, a note saying where it came from.

    Order: the Data Item Catalogue (J0040 is NUM(9,1) there, NUM(9) in flow tables); the flow table; the item's
    domain (DATE, TIME, ... or a kind with the physical length); a curated overlay's format for the same item;
    otherwise BLANK_FORMAT.
    """
    entry = catalogue.get(ref)
    found = normalise_format(entry.logical_format) if entry else None
    if found:
        return found, None
    found = normalise_format(printed)
    if found:
        return found, f"Format blank in the DTC {release} Data Item Catalogue; {found} as the flow table prints it."
    if entry and entry.domain in domains:
        domain = re.sub(r"\s+", "", domains[entry.domain])
        length = entry.physical_length if entry.physical_length.isdigit() and entry.physical_length != "0" else ""
        found = normalise_format(domain) or (normalise_format(re.sub(r"\(n(,m)?\)", f"({length})", domain))
                                             if length else None)
        if found:
            return found, f"Format blank in the DTC {release} Data Item Catalogue; {found} from domain {entry.domain}."
    if ref in known:
        return known[ref]
    return BLANK_FORMAT, BLANK_NOTE.format(release=release)


def valid_values(entry: CatalogueItem | None, logical: str) -> dict[str, str] | None:
    """The item's valid set where the catalogue enumerates it (`A - Actual` lines); None for free text."""
    if entry is None or not entry.valid_set or logical == "BOOLEAN":
        return None
    parsed = LogicalFormat.parse(logical)
    values: dict[str, str] = {}
    for line in entry.valid_set:
        match = _VALUE_LINE.match(line)
        if not match or parsed.check(match[1].strip()) is not None:
            return None
        values.setdefault(match[1].strip(), match[2])
    return values or None


def build_definition(flow: CatalogueFlow, catalogue: Mapping[str, CatalogueItem], domains: Mapping[str, str],
                     known: Mapping[str, tuple[str, str | None]]) -> Document:
    """One flow version -> a definition document (keys in the order the YAML shows them)."""
    release = flow.release or "catalogue"
    if not flow.groups:
        raise CatalogueError(f"{flow.reference}: no structure table")
    for group in flow.groups:
        try:
            Cardinality.parse(group.range)
        except ValueError as exc:
            raise CatalogueError(f"{flow.reference}: group {group.code}: range {exc}") from exc
    group_keys: set[str] = set()
    item_keys: dict[int, set[str]] = {}
    groups: list[Document] = []
    for index, group in enumerate(flow.groups):
        taken = item_keys.setdefault(index, set())
        items = []
        for ref, name, presence, printed in group.items:
            entry = catalogue.get(ref)
            item_name = name or (entry.name if entry else ref)
            logical, note = item_format(ref, printed, catalogue, domains, known, release)
            item: Document = {"ref": ref, "key": unique(snake(item_name, ref.lower()), taken), "name": item_name,
                              "format": logical, "presence": presence}
            values = valid_values(entry, logical)
            if values:
                item["values"] = values
            if ref == MPAN_CORE:
                item["checks"] = ["mpan_check_digit"]
            if note:
                item["note"] = note
            items.append(item)
        parent_taken = item_keys.setdefault(group.parent, set()) if group.parent is not None else set()
        key = unique(snake(group.name, f"group_{group.code.lower()}"), group_keys | parent_taken,
                     group.code.lower())
        group_keys.add(key)
        document: Document = {"code": group.code, "key": key, "name": group.name or f"Group {group.code}",
                              "parent": None if group.parent is None else groups[group.parent]["key"],
                              "range": group.range}
        if group.condition:
            document["note"] = f"Condition ({release}): {group.condition}"
        document["items"] = items
        groups.append(document)
    routes: list[dict[str, str]] = []
    for source, target in flow.routes:
        if source not in ROLE_CODES or target not in ROLE_CODES:
            continue
        route = {"from": ROLE_CODES[source][0], "to": ROLE_CODES[target][0]}
        note = ROLE_CODES[source][1] or ROLE_CODES[target][1]
        if note:
            route["note"] = note
        if route not in routes:
            routes.append(route)
    top: Document = {"flow": flow.flow, "version": flow.version, "name": flow.name}
    if flow.ownership:
        top["ownership"] = flow.ownership
    if flow.description:
        top["description"] = flow.description
    top["source"] = f"DTC {release}, generated by dtn-bridge definitions import."
    if routes:
        top["routes"] = routes
    top["groups"] = groups
    return top


def known_formats(overlays: Mapping[str, Document]) -> dict[str, tuple[str, str | None]]:
    """Formats the overlays give items (by J reference), to fill the catalogue's blanks in every flow."""
    known: dict[str, tuple[str, str | None]] = {}
    for reference in sorted(overlays):
        for group in overlays[reference].get("groups") or []:
            for item in group.get("items") or []:
                if item.get("ref") and item.get("format") and item.get("note") and item["ref"] not in known:
                    known[item["ref"]] = (str(item["format"]), str(item["note"]))
    return known


def import_catalogue(flow_tables: Iterable[Table], item_tables: Iterable[Table], domain_tables: Iterable[Table],
                     overlays: Mapping[str, Document]) -> ImportResult:
    """Every operational flow version -> its definition, with its overlay merged; overlays of flows the catalogue
    lacks (pool files) pass through whole."""
    catalogue = read_items(item_tables)
    domains = read_domains(domain_tables)
    known = known_formats(overlays)
    documents: dict[str, Document] = {}
    skipped: dict[str, str] = {}
    release = ""
    for flow in read_flows(flow_tables):
        release = release or flow.release
        if flow.status != "Operational":
            skipped[flow.reference] = f"status {flow.status or 'not given'}"
            continue
        try:
            document = build_definition(flow, catalogue, domains, known)
        except CatalogueError as exc:
            skipped[flow.reference] = str(exc)
            continue
        if flow.reference in overlays:
            document = apply_overlay(document, overlays[flow.reference])
        documents[flow.reference] = document
    for reference, overlay in overlays.items():
        if reference not in documents and reference not in skipped:
            documents[reference] = _with_mpan_checks(overlay)
    return ImportResult(dict(sorted(documents.items())), dict(sorted(skipped.items())), release)


def _with_mpan_checks(overlay: Mapping[str, Any]) -> Document:
    """A whole overlay (a flow the catalogue lacks) with the MPAN check on its J0003 items, as generated ones have."""
    groups = [{**group, "items": [_ordered({**item, "checks": _join(["mpan_check_digit"], item.get("checks"))},
                                           _ITEM_ORDER) if item.get("ref") == MPAN_CORE else item
                                  for item in group.get("items") or []]}
              for group in overlay.get("groups") or []]
    return {**overlay, "groups": groups}


# -- overlays ----------------------------------------------------------------------------------------------------

_TOP_ORDER = ("flow", "version", "name", "ownership", "description", "source", "routes", "groups")
_GROUP_ORDER = ("code", "key", "name", "parent", "range", "lenient_range", "lenient_reason", "checks", "note",
                "items")
_ITEM_ORDER = ("ref", "key", "name", "format", "presence", "values", "checks", "note")


def _ordered(document: Mapping[str, Any], order: Sequence[str]) -> Document:
    ordered = {name: document[name] for name in order if name in document}
    ordered.update({name: value for name, value in document.items() if name not in ordered})
    return ordered


def _occurrences(entries: Iterable[Mapping[str, Any]], field_name: str) -> list[tuple[Any, int]]:
    """(value, n) for each entry: the n-th entry with that value of `field_name`, so repeated codes stay apart."""
    seen: dict[Any, int] = {}
    result = []
    for entry in entries:
        value = entry.get(field_name)
        seen[value] = seen.get(value, 0) + 1
        result.append((value, seen[value]))
    return result


def apply_overlay(generated: Document, overlay: Mapping[str, Any]) -> Document:
    """Merge a curated overlay over a generated definition.

    Top-level fields the overlay states replace the generated ones. Overlay groups match generated groups by code
    and occurrence (the second SUP is the second SUP), items by reference and occurrence within the group; stated
    fields replace, `checks` are joined. An overlay item that states a format brings its own valid set: the
    catalogue's is dropped unless the overlay states `values` too. The structure (which groups, their parents and
    order) stays the catalogue's; overlay groups or items the catalogue lacks are kept after their overlay
    predecessor, so nothing curated is lost (`compare` reports them).
    """
    merged: Document = {name: value for name, value in generated.items() if name != "groups"}
    merged.update({name: value for name, value in overlay.items() if name != "groups"})
    groups = [dict(group) for group in generated["groups"]]
    old_keys = [group["key"] for group in groups]
    places = {match: index for index, match in enumerate(_occurrences(groups, "code"))}
    inserted: list[tuple[int, Document]] = []
    last = -1
    for match, group_overlay in zip(_occurrences(overlay.get("groups") or [], "code"), overlay.get("groups") or []):
        index = places.get(match)
        if index is None:
            inserted.append((last, dict(group_overlay)))
            continue
        last = index
        target = groups[index]
        for name, value in group_overlay.items():
            if name == "items":
                target["items"] = _merge_items(target["items"], value or [])
            elif name == "checks":
                target["checks"] = _join(target.get("checks"), value)
            elif name != "parent":
                target[name] = value
    renamed = dict(zip(old_keys, (group["key"] for group in groups)))
    for group in groups:
        if group["parent"] is not None:
            group["parent"] = renamed[group["parent"]]
    for after, group in reversed(inserted):
        groups.insert(after + 1, group)
    merged["groups"] = [_ordered(group, _GROUP_ORDER) for group in groups]
    return _ordered(merged, _TOP_ORDER)


def _join(first: Any, second: Any) -> list[Any]:
    joined: list[Any] = []
    for check in [*(first or []), *(second or [])]:
        if check not in joined:
            joined.append(check)
    return joined


def _merge_items(generated: list[Document], overlay: list[Mapping[str, Any]]) -> list[Document]:
    items = [dict(item) for item in generated]
    places = {match: index for index, match in enumerate(_occurrences(items, "ref"))}
    inserted: list[tuple[int, Document]] = []
    last = -1
    for match, item_overlay in zip(_occurrences(overlay, "ref"), overlay):
        index = places.get(match) if match[0] is not None else None
        if index is None:
            inserted.append((last, dict(item_overlay)))
            continue
        last = index
        target = items[index]
        if "format" in item_overlay and "values" not in item_overlay:
            target.pop("values", None)
        if "note" not in item_overlay and "format" in item_overlay:
            target.pop("note", None)  # the generated note explains the generated format, which the overlay replaced
        for name, value in item_overlay.items():
            target[name] = _join(target.get("checks"), value) if name == "checks" else value
    for after, item in reversed(inserted):
        items.insert(after + 1, item)
    return [_ordered(item, _ITEM_ORDER) for item in items]


# -- output and comparison -----------------------------------------------------------------------------------------


def dump(document: Mapping[str, Any], release: str) -> str:
    """The YAML text of one definition, with a header saying where it came from and where curation goes."""
    reference = f"{document['flow']}{document['version']}"
    # block style, long lines kept whole, the document's key order: diffs between releases stay line by line
    body = yaml.safe_dump(document, sort_keys=False, allow_unicode=True, width=10_000, default_flow_style=False)
    return (f"# {reference} {document['name']}: generated by `dtn-bridge definitions import` from DTC {release}.\n"
            f"# Do not edit: curated knowledge goes in curated/{reference}.yaml (an overlay the import merges).\n"
            + body)


def structure(document: Mapping[str, Any]) -> list[tuple[str, str | None, str, tuple[tuple[str, str], ...]]]:
    """What a definition says about file structure: per group its code, parent code, range, item refs and formats."""
    codes = {group["key"]: group["code"] for group in document["groups"]}
    return [(group["code"], codes.get(group["parent"]) if group["parent"] else None, str(group["range"]),
             tuple((str(item.get("ref")), str(item["format"])) for item in group["items"]))
            for group in document["groups"]]


def compare(new: Mapping[str, Document], old: Mapping[str, Document]) -> list[str]:
    """Lines saying what changed from `old` to `new`: flows and versions added or gone, groups, items, formats."""
    lines: list[str] = []
    new_flows = {ref[:5] for ref in new} - {ref[:5] for ref in old}
    for reference in sorted(set(new) - set(old)):
        kind = "new flow" if reference[:5] in new_flows else "new version"
        lines.append(f"{reference}: {kind}: {new[reference]['name']}")
    for reference in sorted(set(old) - set(new)):
        lines.append(f"{reference}: not in the catalogue")
    for reference in sorted(set(new) & set(old)):
        lines.extend(f"{reference}: {line}" for line in _compare_flow(new[reference], old[reference]))
    return lines


def _compare_flow(new: Document, old: Document) -> list[str]:
    lines: list[str] = []
    before = dict(zip(_occurrences(old["groups"], "code"), structure(old)))
    after = dict(zip(_occurrences(new["groups"], "code"), structure(new)))
    for match in [m for m in after if m not in before]:
        lines.append(f"group {_name(match)} added")
    for match in [m for m in before if m not in after]:
        lines.append(f"group {_name(match)} removed")
    for match in [m for m in after if m in before]:
        _code, new_parent, new_range, new_items = after[match]
        _code, old_parent, old_range, old_items = before[match]
        where = f"group {_name(match)}"
        if new_parent != old_parent:
            lines.append(f"{where}: parent {old_parent} -> {new_parent}")
        if new_range != old_range:
            lines.append(f"{where}: range {old_range} -> {new_range}")
        old_by = dict(zip(_occurrences([{"ref": r} for r, _f in old_items], "ref"), old_items))
        new_by = dict(zip(_occurrences([{"ref": r} for r, _f in new_items], "ref"), new_items))
        for item in [m for m in new_by if m not in old_by]:
            lines.append(f"{where}: item {_name(item)} added ({new_by[item][1]})")
        for item in [m for m in old_by if m not in new_by]:
            lines.append(f"{where}: item {_name(item)} removed")
        for item in [m for m in new_by if m in old_by and new_by[m][1] != old_by[m][1]]:
            lines.append(f"{where}: item {_name(item)} format {old_by[item][1]} -> {new_by[item][1]}")
        if [r for r, _f in new_items] != [r for r, _f in old_items] and set(new_by) == set(old_by):
            lines.append(f"{where}: items reordered")
    return lines


def _name(match: tuple[Any, int]) -> str:
    return str(match[0]) if match[1] == 1 else f"{match[0]} (occurrence {match[1]})"
