"""Values the flow engine passes around: the file envelope, flow instances and defects."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any, Literal

from bridge.dtn.compiled import GroupDefinition

# ZHV ... ZPT (a DTN user file); ZHD in its pool layout (File Type, roles, time) or in the ZHV field layout (as in
# Elexon's D0265 PTF download), both closed by a pool trailer (record count and checksum).
Layout = Literal["ZHV", "ZHD-POOL", "ZHD-ZHV"]


@dataclass(frozen=True, slots=True)
class Defect:
    """One thing wrong with a file, located as precisely as the file allows."""

    rule: str  # a stable machine code, e.g. item-format, group-unexpected, trailer-group-count
    message: str  # what is wrong, for people, without the location
    line: int | None = None
    group: str | None = None
    item: int | None = None
    item_key: str | None = None
    item_format: str | None = None

    def where(self, flow_reference: str | None = None) -> str:
        """`D0010002 line 17 group 030 item 3 (register_reading, NUM(9,1))`: as precise as the defect is."""
        parts = [flow_reference] if flow_reference else []
        if self.line is not None:
            parts.append(f"line {self.line}")
        if self.group is not None:
            parts.append(f"group {self.group}")
        if self.item is not None:
            parts.append(f"item {self.item}")
            if self.item_key:
                parts.append(f"({self.item_key}, {self.item_format})" if self.item_format else f"({self.item_key})")
        return " ".join(parts)

    def describe(self, flow_reference: str | None = None) -> str:
        """One line: `D0010002 line 17 group 030 item 3 (register_reading, NUM(9,1)): '12x4' is not a number`."""
        where = self.where(flow_reference)
        return f"{where}: {self.message}" if where else self.message

    def locate(self, flow_reference: str | None = None) -> str:
        """The location and the rule, without the message, which may quote meter data: safe for logs."""
        return f"{self.where(flow_reference) or 'file'}: {self.rule}"

    def as_dict(self) -> dict[str, Any]:
        return {key: value for key, value in asdict(self).items() if value is not None}


@dataclass(frozen=True, slots=True)
class FileHeader:
    """The ZHV (or ZHD) record: who sent which flow to whom, when."""

    layout: Layout
    file_identifier: str
    flow_reference: str  # J0937, e.g. D0010002
    from_role: str
    from_participant: str
    to_role: str
    to_participant: str
    created: str  # J0280 as written, ccyymmddhhmmss
    sending_application: str = ""
    receiving_application: str = ""
    broadcast: str = ""
    test_data_flag: str = ""
    terminated: bool = True  # every field followed by '|' (DTN files); pool files have no final pipe

    @property
    def flow(self) -> str:
        return self.flow_reference[:5]

    @property
    def version(self) -> str:
        return self.flow_reference[5:]


@dataclass(frozen=True, slots=True)
class FileTrailer:
    """The ZPT record as written. Pool trailers carry a record count and a checksum only."""

    file_identifier: str | None
    group_count: int | None  # ZHV: Total Group Count (J1067); pool: Record Count incl. header and trailer (J1093)
    checksum: str  # J1078 as written, often empty in DTN files
    flow_count: int | None  # J1066, DTN files only
    completed: str | None  # J1065 File Completion Timestamp, DTN files only


class GroupInstance:
    """One line of a flow body: its group, its items' texts as written, and the groups nested under it.

    A plain slotted class rather than a dataclass: the reader makes one per line, so its constructor is hot.
    """

    __slots__ = ("children", "definition", "line", "values")

    def __init__(self, definition: GroupDefinition, values: tuple[str, ...], line: int,
                 children: list[GroupInstance] | None = None) -> None:
        self.definition = definition
        self.values = values
        self.line = line
        self.children: list[GroupInstance] = children if children is not None else []

    def lines(self) -> int:
        """How many lines (groups) this instance spans, itself included."""
        return 1 + sum(child.lines() for child in self.children)


@dataclass(slots=True)
class FlowInstance:
    """A level-1 group with everything under it: what the trailer's Flow Count counts, and one event."""

    index: int  # 1-based position among the file's flow instances
    root: GroupInstance
    content: str | None = None  # its lines as `code|item|...|item`, when the reader kept them (the event id's input)
    data: dict[str, Any] | None = None  # its event object, when the reader built it (`root` then has no children)
