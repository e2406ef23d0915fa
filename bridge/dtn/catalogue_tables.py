"""The DTC catalogue's tables -> catalogue records: the reading half of `dtn-bridge definitions import`.

An adapter reads the DTC's Word documents into rows of cell texts (shared/reference/dtc-documents.md); this module
reads those rows into items, domains and flows (with their groups and item rows), as the catalogue prints them.
bridge/dtn/catalogue.py builds definitions from them.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field

from bridge.errors import CatalogueError

Table = Sequence[Sequence[str]]

_PRESENCE = {"1": "mandatory", "O": "optional", "N": "unused"}


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

