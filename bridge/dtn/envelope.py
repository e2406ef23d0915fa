"""The file's envelope: the ZHV (or ZHD) header read and checked, and the ZPT trailer checked against what the body
held. Every defect goes to the pass's DefectLog."""

from __future__ import annotations

from typing import Final

from bridge.dtn.checksum import PoolChecksum
from bridge.dtn.compiled import FlowDefinition
from bridge.dtn.defects import DefectLog
from bridge.dtn.definitions import DefinitionSet
from bridge.dtn.formats import LogicalFormat, quoted
from bridge.dtn.model import FileHeader, FileTrailer, Layout
from bridge.errors import FlowDefinitionError

_GROUP_COUNT_MODULUS: Final = 10**10  # J1067: only the 10 least significant digits are written
_COUNT_DIGITS: Final = 18  # no count in a trailer is longer
_DATETIME = LogicalFormat.parse("DATETIME")


def read_header(line: str, definitions: DefinitionSet,
                log: DefectLog) -> tuple[FileHeader | None, FlowDefinition | None]:
    """The header of the file's first line and the definition of its flow, each None where the file does not say."""
    record = line[:3]
    if record not in ("ZHV", "ZHD"):
        log.add("header-missing", f"the file does not start with a ZHV (or pool ZHD) header: {line[:40]!r}", line=1)
        return None, None
    terminated = line.endswith("|")
    fields = (line[:-1] if terminated else line).split("|")
    layout: Layout
    if record == "ZHV":
        layout = "ZHV"
    else:
        layout = "ZHD-ZHV" if len(fields) == 12 else "ZHD-POOL"
    if layout == "ZHD-POOL":
        if len(fields) != 7:
            log.add("header-fields", f"a pool ZHD header has 6 fields, found {len(fields) - 1}", line=1, group=record)
            return None, None
        _, reference, from_role, from_id, to_role, to_id, created = fields
        header = FileHeader(layout, "", reference, from_role, from_id, to_role, to_id, created, terminated=terminated)
    else:
        if len(fields) != 12:
            extra = f" (extra: {shown(fields[12:])})" if len(fields) > 12 else ""
            log.add("header-fields", f"a {record} header has 11 fields, found {len(fields) - 1}{extra}", line=1,
                    group=record)
            return None, None
        _, identifier, reference, from_role, from_id, to_role, to_id, created, *applications = fields
        sending, receiving, broadcast, test = applications
        header = FileHeader(layout, identifier, reference, from_role, from_id, to_role, to_id, created, sending,
                            receiving, broadcast, test, terminated=terminated)
    _check_header(header, record, log)
    where = {"line": 1, "group": record, "item": 2 if layout != "ZHD-POOL" else 1, "item_key": "flow_reference"}
    try:
        definition = definitions.get(header.flow_reference)
    except FlowDefinitionError as exc:  # definitions compile on first use: a broken one fails its files only
        log.add("flow-definition-invalid", f"the definition of {header.flow_reference} is invalid: {exc}", **where)
        return header, None
    if definition is None:
        log.add("flow-unknown", f"flow {quoted(header.flow_reference)} has no definition in flow_definitions/ "
                "(no such flow version in the imported DTC catalogue; import a newer one with "
                "`dtn-bridge definitions import`)", **where)
    return header, definition


def _check_header(header: FileHeader, record: str, log: DefectLog) -> None:
    pool = header.layout == "ZHD-POOL"
    checks: list[tuple[int, str, str, int, int]] = [  # position, key, value, min length, max length
        (1, "file_identifier", header.file_identifier, 0 if header.layout != "ZHV" else 1, 10),
        (2, "from_role", header.from_role, 1, 1),
        (3, "from_participant", header.from_participant, 1, 4),
        (4, "to_role", header.to_role, 1, 1),
        (5, "to_participant", header.to_participant, 1, 4),
        (8, "sending_application", header.sending_application, 0, 5),
        (9, "receiving_application", header.receiving_application, 0, 5),
        (10, "broadcast", header.broadcast, 0, 1),
        (11, "test_data_flag", header.test_data_flag, 0 if pool else 1, 4),
    ]
    for position, key, value, low, high in checks:
        if pool and position in (1, 8, 9, 10, 11):
            continue
        if not low <= len(value) <= high:
            size = f"{low}" if low == high else f"{low} to {high}"
            log.add("header-field", f"{quoted(value)} must be {size} characters", line=1, group=record,
                    item=position - (1 if pool else 0), item_key=key)
    reference_position = 1 if pool else 2
    if not (len(header.flow_reference) == 8 and header.flow_reference[5:].isdigit()):
        log.add("header-field", f"{quoted(header.flow_reference)} is not a flow reference and version like D0010002",
                line=1, group=record, item=reference_position, item_key="flow_reference")
    problem = _DATETIME.check(header.created)
    if problem:
        log.add("header-field", problem, line=1, group=record, item=reference_position + 5, item_key="created",
                item_format="DATETIME")


def read_trailer(line: str, line_number: int, header: FileHeader, group_count: int, flow_count: int,
                 checksum: PoolChecksum, log: DefectLog) -> FileTrailer | None:
    """The trailer on `line_number`, its counts (and a pool file's checksum) checked against the body's; None when
    it has the wrong number of fields."""
    terminated = line.endswith("|") and header.terminated
    fields = (line[:-1] if terminated else line).split("|")
    if fields[0] != "ZPT":
        log.add("trailer-code", f"the trailer's first field must be ZPT, found {fields[0][:40]!r}", line=line_number,
                group="ZPT")

    def expect(written: str, actual: int, rule: str, name: str, item: int) -> None:
        if _int(written) != actual:
            log.add(rule, f"{name} is {written[:40]!r}{'...' if len(written) > 40 else ''} but the file has {actual}",
                    line=line_number, group="ZPT", item=item)

    if header.layout == "ZHV":
        if len(fields) != 6:
            log.add("trailer-fields", f"a ZPT trailer has 5 fields, found {len(fields) - 1}", line=line_number,
                    group="ZPT")
            return None
        _, file_identifier, written_groups, written_checksum, written_flows, completed = fields
        trailer = FileTrailer(file_identifier, _int(written_groups), written_checksum, _int(written_flows), completed)
        if file_identifier != header.file_identifier:
            log.add("trailer-file-identifier", f"file identifier {quoted(file_identifier)} differs from the "
                    f"header's {quoted(header.file_identifier)}", line=line_number, group="ZPT", item=1)
        expect(written_groups, group_count % _GROUP_COUNT_MODULUS, "trailer-group-count", "Total Group Count", 2)
        expect(written_flows, flow_count, "trailer-flow-count", "Flow Count", 4)
        problem = _DATETIME.check(completed)
        if problem:
            log.add("trailer-field", problem, line=line_number, group="ZPT", item=5, item_key="completed",
                    item_format="DATETIME")
        return trailer
    if len(fields) != 3:
        log.add("trailer-fields", f"a pool ZPT trailer has 2 fields, found {len(fields) - 1}", line=line_number,
                group="ZPT")
        return None
    _, record_count, written_checksum = fields
    expect(record_count, group_count + 2, "trailer-record-count", "Record Count", 1)
    expect(written_checksum, checksum.value, "trailer-checksum", "Checksum", 2)
    return FileTrailer(None, _int(record_count), written_checksum, None, None)


def shown(extra: list[str]) -> str:
    """Extra fields as a short list: a line of a million pipes must not make a million-field message."""
    head = [field[:40] for field in extra[:3]]
    return f"{head!r}" if len(extra) <= 3 else f"{head!r} and {len(extra) - 3} more"


def _int(text: str) -> int | None:
    """A trailer's count, or None: not digits, or more digits than any count (Python refuses to convert a text of
    over 4300 digits, and a mutated file may hold one)."""
    return int(text) if text.isdigit() and text.isascii() and len(text) <= _COUNT_DIGITS else None
