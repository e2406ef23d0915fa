"""Small DTC catalogue documents built with python-docx, in the table layout of the real DTC 15.4 Word documents
(shared/reference/dtc-documents.md), for the importer's tests. The real documents are not committed (licence
unclear); tests that need them look in $DTC_DOCUMENTS (default /tmp/dtc154) and skip with a reason when absent."""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

REAL_DOCUMENTS = Path(os.environ.get("DTC_DOCUMENTS", "/tmp/dtc154"))
LEVELS = 8


@dataclass
class Flow:
    """One flow version: rows of its structure table as (code or '', name, range, condition, level, mark, ref,
    item name, printed format)."""

    reference: str
    version: str
    name: str
    routes: Sequence[tuple[str, str]]
    rows: Sequence[tuple[str, ...]]
    status: str = "Operational"
    ownership: str = "MRA"
    description: str = "A flow for tests."


def group(code: str, name: str, range_: str, level: int, condition: str = "") -> tuple[str, ...]:
    return ("group", code, name, range_, condition, str(level))


def item(level: int, mark: str, ref: str, name: str, printed: str) -> tuple[str, ...]:
    return ("item", str(level), mark, ref, name, printed)


@dataclass
class Item:
    """One Data Item Catalogue block."""

    ref: str
    name: str
    logical_format: str
    valid_set: Sequence[str] = ()
    domain: str = ""
    physical_length: str = "0"
    extra: dict[str, str] = field(default_factory=dict)


def _table(document: object, rows: Sequence[Sequence[str]]) -> None:
    width = max(len(row) for row in rows)
    table = document.add_table(rows=len(rows), cols=width)  # type: ignore[attr-defined]
    for r, row in enumerate(rows):
        for c, text in enumerate(row):
            table.cell(r, c).text = text
    document.add_paragraph("")  # type: ignore[attr-defined]


def write_flow_catalogue(path: Path, flows: Sequence[Flow]) -> Path:
    import docx

    document = docx.Document()
    _table(document, [["Flow Ref", "Flow Name", "From", "To"],
                      *[[flow.reference, flow.name, *route] for flow in flows for route in flow.routes[:1]]])
    for flow in flows:
        _table(document, [["Flow Reference:", flow.reference], ["Flow Version:", flow.version,
                                                                f"Status: {flow.status}"]])
        _table(document, [["Flow Name:", flow.name], ["Flow Description:", flow.description],
                          ["Flow Ownership:", flow.ownership]])
        _table(document, [["From", "To", "Version"], *[[source, target, "15.4"] for source, target in flow.routes]])
        _table(document, [["Reference", "Item Name"], *[[row[3], row[4]] for row in flow.rows if row[0] == "item"]])
        header = ["Group", "Group Description", "Range", "Condition", *[f"L{n}" for n in range(1, LEVELS + 1)],
                  "Item Reference", "Item Name", "Format"]
        rows = [header]
        for row in flow.rows:
            marks = [""] * LEVELS
            if row[0] == "group":
                _kind, code, name, range_, condition, level = row
                marks[int(level) - 1] = "G"
                rows.append([code, name, range_, condition, *marks, "", "", ""])
            else:
                _kind, level, mark, ref, name, printed = row
                marks[int(level) - 1] = mark
                rows.append(["", "", "", "", *marks, ref, name, printed])
        _table(document, rows)
        _table(document, [["Notes:", "Notes for tests."]])
    document.save(str(path))
    return path


def write_item_catalogue(path: Path, items: Sequence[Item]) -> Path:
    import docx

    document = docx.Document()
    _table(document, [["Item Name", "Ref"], *[[entry.name, entry.ref] for entry in items]])
    _table(document, [["Ref", "Item Name"], *[[entry.ref, entry.name] for entry in items]])
    for entry in items:
        values = list(entry.valid_set) or [""]
        rows = [["Item Name:", entry.name], ["Item Reference:", entry.ref], ["Item Ownership:", "MRA"],
                ["Item Description:", f"{entry.name} for tests."], ["Item Units:", "None"],
                ["Valid Set:", values[0]], *[["", value] for value in values[1:]],
                ["Validation:", "As Valid Set"], ["Domain:", entry.domain], ["Logical Format:", entry.logical_format],
                ["Physical Length:", entry.physical_length], ["Notes:", ""]]
        _table(document, rows)
    document.save(str(path))
    return path


def write_domains(path: Path, domains: dict[str, str]) -> Path:
    import docx

    document = docx.Document()
    _table(document, [["Domain Name", "Page"], *[[name, str(n)] for n, name in enumerate(domains, start=2)]])
    for name, logical in domains.items():
        _table(document, [["Domain Name:", name], ["Domain Description:", "For tests."], ["Units:", "None"],
                          ["Valid Set:", "Any"], ["Validation:", "As Valid Set"], ["Sub-Type of:", ""],
                          ["Picture:", ""], ["Logical Format:", logical], ["Physical Length:", "Any"],
                          ["Notes:", ""]])
    document.save(str(path))
    return path
