"""The DTC catalogue -> flow definitions: the pure half of `dtn-bridge definitions import`.

The DTC's Word documents are tables (shared/reference/dtc-documents.md); an adapter reads them into rows of cell
texts, bridge/dtn/catalogue_tables.py reads those into catalogue records, and this module builds one definition
document per operational flow version, in the YAML schema of docs/flow-definitions.md, with its curated overlay
merged (bridge/dtn/overlays.py); it also dumps and compares definitions. Output is deterministic: the same documents
and overlays always give the same bytes.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

import yaml

from bridge.dtn.catalogue_tables import CatalogueFlow, CatalogueItem, Table, read_domains, read_flows, read_items
from bridge.dtn.compiled import Cardinality
from bridge.dtn.formats import FormatSyntaxError, LogicalFormat
from bridge.dtn.overlays import Document, apply_overlay, occurrences, with_item_check
from bridge.errors import CatalogueError

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


@dataclass(slots=True)
class ImportResult:
    """What an import produced: definition documents by reference, and what it could not read."""

    documents: dict[str, Document]
    skipped: dict[str, str]  # reference -> why
    release: str



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
            documents[reference] = with_item_check(overlay, MPAN_CORE, "mpan_check_digit")
    return ImportResult(dict(sorted(documents.items())), dict(sorted(skipped.items())), release)


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
    before = dict(zip(occurrences(old["groups"], "code"), structure(old)))
    after = dict(zip(occurrences(new["groups"], "code"), structure(new)))
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
        old_by = dict(zip(occurrences([{"ref": r} for r, _f in old_items], "ref"), old_items))
        new_by = dict(zip(occurrences([{"ref": r} for r, _f in new_items], "ref"), new_items))
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
