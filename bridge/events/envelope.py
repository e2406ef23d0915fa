"""Canonical events: a flow instance <-> a CloudEvent 1.0 (structured JSON), as described in docs/events.md.

One event per flow instance. Context attributes carry the file envelope verbatim (`dtc*` extensions), so the events
of a file are enough to write the file back byte for byte; `data` carries the instance as nested groups with named,
typed items. Event ids are deterministic (UUID v5 of the envelope, the position and the content), so a replay of the
same file yields the same ids and a changed file yields new ones.
"""

from __future__ import annotations

import hashlib
import re
import uuid
from collections.abc import Iterable, Iterator, Mapping
from datetime import datetime
from typing import Any
from zoneinfo import ZoneInfo

from bridge.dtn.compiled import FlowDefinition, GroupDefinition
from bridge.dtn.definitions import DefinitionSet
from bridge.dtn.formats import LogicalFormat
from bridge.dtn.model import FileHeader, FileTrailer, FlowInstance, GroupInstance, Layout
from bridge.dtn.writer import FlowFileWriter, instance_records
from bridge.errors import EventError

Event = dict[str, Any]

EVENT_NAMESPACE = uuid.UUID("6f6b1f0e-2d0c-5b9e-9d0a-44544e2d4252")  # fixed forever: ids must not change
_NAMESPACE = EVENT_NAMESPACE.bytes
SOURCE_PREFIX = "urn:mpid:"
_LONDON = ZoneInfo("Europe/London")
_LAYOUTS: tuple[Layout, ...] = ("ZHV", "ZHD-POOL", "ZHD-ZHV")
# What each envelope attribute that reaches a header or trailer line may hold (DTC 15.4 physical header items).
# Every value is printable ASCII without '|', so no attribute can split, add or shift a line of the file. The file
# identifier also becomes part of a file name: no space, '/' or backslash.
MPID = re.compile(r"[A-Z0-9]{4}")  # J0002 Market Participant Id
ROLE_CODE = re.compile(r"[A-Z0-9]")  # J0934/J0935 Market Participant Role Code
_FILE_IDENTIFIER = re.compile(r"[!-.0-\[\]-{}~]{1,10}")  # J1064 File Identifier, CHAR(10)
_CHAR = re.compile(r"[ -{}~]*")  # printable ASCII but '|'
_DATETIME = LogicalFormat.parse("DATETIME")


def event_id_of(name: str) -> str:
    """`str(uuid.uuid5(EVENT_NAMESPACE, name))`, without making the UUID object: this runs once per event."""
    digest = bytearray(hashlib.sha1(_NAMESPACE + name.encode()).digest()[:16])
    digest[6] = digest[6] & 0x0F | 0x50  # version 5
    digest[8] = digest[8] & 0x3F | 0x80  # RFC 4122 variant
    text = digest.hex()
    return f"{text[:8]}-{text[8:12]}-{text[12:16]}-{text[16:20]}-{text[20:]}"


SCHEMA_PREFIX = "urn:dtn-bridge:schema:"


def dataschema_for(name: str) -> str:
    """The CloudEvents `dataschema` of a flow version's events (`urn:dtn-bridge:schema:D0010002`), also the `$id`
    of its JSON Schema (docs/schemas/D0010002.schema.json). A URN, not an https URL: the project owns no domain
    whose URLs it could keep answering; a URN names the schema without promising a place, and never changes."""
    return SCHEMA_PREFIX + name


def source_for(participant: str) -> str:
    """The CloudEvents `source` of a market participant: `urn:mpid:<MPID>`."""
    return SOURCE_PREFIX + participant


def participant_of(source: str) -> str | None:
    """The MPID named by an event `source`, or None when it is not a participant source."""
    return source[len(SOURCE_PREFIX):] if source.startswith(SOURCE_PREFIX) else None


def rfc3339(timestamp: str) -> str:
    """A DTN timestamp (ccyymmddhhmmss, UK local time) as RFC 3339 in UTC."""
    local = datetime.strptime(timestamp, "%Y%m%d%H%M%S").replace(tzinfo=_LONDON)
    return local.astimezone(ZoneInfo("UTC")).strftime("%Y-%m-%dT%H:%M:%SZ")


def group_to_data(group: GroupInstance) -> dict[str, Any]:
    """A group instance as an object: non-empty items by key, typed; child groups by key (a list, or an object
    where the DTC allows at most one)."""
    data: dict[str, Any] = {}
    for (key, convert), text in zip(group.definition.json_items, group.values, strict=True):
        if text:
            data[key] = text if convert is None else convert(text)
    for child in group.children:
        child_definition = child.definition
        if child_definition.single:
            data[child_definition.key] = group_to_data(child)
        else:
            data.setdefault(child_definition.key, []).append(group_to_data(child))
    return data


class EventBuilder:
    """Builds the events of one file. Everything the events share is computed once, here."""

    def __init__(self, definition: FlowDefinition, header: FileHeader, trailer: FileTrailer, flow_count: int) -> None:
        self.definition = definition
        envelope: str = header.layout
        if header.terminated != (header.layout == "ZHV"):
            envelope += "+pipe" if header.terminated else "+nopipe"
        attributes: dict[str, Any] = {
            "source": source_for(header.from_participant),
            "type": definition.event_type,
            "time": rfc3339(header.created),
            "datacontenttype": "application/json",
            "dataschema": dataschema_for(definition.reference),
            "dtcenvelope": envelope,
            "dtcfileid": header.file_identifier,
            "dtcfromrole": header.from_role,
            "dtcfrom": header.from_participant,
            "dtctorole": header.to_role,
            "dtcto": header.to_participant,
            "dtccreated": header.created,
            "dtccompleted": trailer.completed,
            "dtcchecksum": trailer.checksum if header.layout == "ZHV" else "",  # carried, not judged: see reader
            "dtctestflag": header.test_data_flag,
            "dtcsendapp": header.sending_application,
            "dtcrecvapp": header.receiving_application,
            "dtcbroadcast": header.broadcast,
            "dtcflowcount": flow_count,
        }
        self.attributes = {key: value for key, value in attributes.items() if value not in ("", None)}
        if header.layout != "ZHV":
            self.attributes.setdefault("dtcfileid", "")  # the routing and the ledger rely on its presence
        self._id_prefix = (f"{definition.reference}|{header.from_role}|{header.from_participant}|{header.to_role}|"
                           f"{header.to_participant}|{header.file_identifier}|{header.created}")

    def __call__(self, instance: FlowInstance) -> Event:
        root = instance.root
        content = instance.content if instance.content is not None else _content(root)
        event_id = event_id_of(f"{self._id_prefix}|{instance.index}\n{content}")
        event: Event = {"specversion": "1.0", "id": event_id, **self.attributes, "dtcindex": instance.index}
        mpan = root.values[0] if root.definition.items and root.definition.items[0].key == "mpan_core" else ""
        if mpan:
            event["subject"] = mpan
        event["data"] = instance.data if instance.data is not None else {root.definition.key: group_to_data(root)}
        return event


def _content(root: GroupInstance) -> str:
    """The instance's lines as `code|item|...|item` (a group without items as `code|`), in file order: what its id
    is made of."""
    return "\n".join(record if len(record) > 3 else record + "|" for record in instance_records(root))


# -- events -> file ---------------------------------------------------------------------------------------------------


def _attribute(event: Mapping[str, Any], name: str, required: bool = True) -> str:
    value = event.get(name)
    if value is None:
        if required:
            raise EventError(f"event {event.get('id', '?')}: attribute {name!r} is missing")
        return ""
    if not isinstance(value, str):
        raise EventError(f"event {event.get('id', '?')}: attribute {name!r} must be a string")
    return value


def header_of(event: Mapping[str, Any], definition: FlowDefinition) -> FileHeader:
    """The file header an event belongs to."""
    envelope, *flags = _attribute(event, "dtcenvelope", required=False).split("+") or ["ZHV"]
    envelope = envelope or "ZHV"
    if envelope not in _LAYOUTS or not set(flags) <= {"pipe", "nopipe"}:
        raise EventError(f"event {event.get('id', '?')}: dtcenvelope {event.get('dtcenvelope')!r} is not one of "
                         "ZHV, ZHD-POOL, ZHD-ZHV (with +pipe or +nopipe)")
    layout: Layout = envelope
    terminated = "pipe" in flags or (layout == "ZHV" and "nopipe" not in flags)
    header = FileHeader(
        layout=layout,
        file_identifier=_attribute(event, "dtcfileid", required=layout == "ZHV"),
        flow_reference=definition.reference,
        from_role=_attribute(event, "dtcfromrole"),
        from_participant=_attribute(event, "dtcfrom"),
        to_role=_attribute(event, "dtctorole"),
        to_participant=_attribute(event, "dtcto"),
        created=_attribute(event, "dtccreated"),
        sending_application=_attribute(event, "dtcsendapp", required=False),
        receiving_application=_attribute(event, "dtcrecvapp", required=False),
        broadcast=_attribute(event, "dtcbroadcast", required=False),
        test_data_flag=_attribute(event, "dtctestflag", required=layout == "ZHV"),
        terminated=terminated,
    )
    if participant_of(_attribute(event, "source")) != header.from_participant:
        raise EventError(f"event {event.get('id', '?')}: source {event.get('source')!r} does not name the sending "
                         f"participant {header.from_participant!r}")
    _check_header(event, header)
    return header


def _check_header(event: Mapping[str, Any], header: FileHeader) -> None:
    """Hold the header attributes to their DTC formats before they become a header line or a file name."""
    zhv = header.layout == "ZHV"
    _require(event, "dtcfileid", header.file_identifier, _FILE_IDENTIFIER, "1 to 10 printable characters without "
             "space, '|', '/' or '\\'", optional=not zhv)
    _require(event, "dtcfromrole", header.from_role, ROLE_CODE, "a role code (one of A-Z, 0-9)")
    _require(event, "dtcfrom", header.from_participant, MPID, "a market participant id (4 of A-Z, 0-9)")
    _require(event, "dtctorole", header.to_role, ROLE_CODE, "a role code (one of A-Z, 0-9)")
    _require(event, "dtcto", header.to_participant, MPID, "a market participant id (4 of A-Z, 0-9)")
    _require_datetime(event, "dtccreated", header.created)
    for name, value, size in (("dtcsendapp", header.sending_application, 5),
                              ("dtcrecvapp", header.receiving_application, 5), ("dtcbroadcast", header.broadcast, 1),
                              ("dtctestflag", header.test_data_flag, 4)):
        _require(event, name, value, _CHAR, f"at most {size} printable characters without '|'", size=size,
                 optional=name != "dtctestflag" or not zhv)


def _require(event: Mapping[str, Any], name: str, value: str, pattern: re.Pattern[str], what: str, *,
             size: int | None = None, optional: bool = False) -> None:
    if (optional and not value) or (pattern.fullmatch(value) and (size is None or len(value) <= size)):
        return
    raise EventError(f"event {event.get('id', '?')}: attribute {name!r} {value[:40]!r} is not {what}")


def _require_datetime(event: Mapping[str, Any], name: str, value: str) -> None:
    if _DATETIME.check(value):
        raise EventError(f"event {event.get('id', '?')}: attribute {name!r} {value[:40]!r} is not a DATETIME "
                         "(ccyymmddhhmmss, a real time of day)")


def trailer_of(event: Mapping[str, Any], header: FileHeader) -> tuple[str, str]:
    """The File Completion Timestamp (the creation time when absent) and the ZHV checksum an event carries for its
    source file's trailer, held to their DTC formats (DATETIME; J1078 NUM(10), carried verbatim)."""
    completed = _attribute(event, "dtccompleted", required=False) or header.created
    _require_datetime(event, "dtccompleted", completed)
    checksum = _attribute(event, "dtcchecksum", required=False)
    _require(event, "dtcchecksum", checksum, _CHAR, "at most 10 printable characters without '|'", size=10,
             optional=True)
    return completed, checksum


def data_to_group(definition: GroupDefinition, data: Any, path: str) -> GroupInstance:
    """Rebuild a group instance from event data, checking every item against the definition."""
    if not isinstance(data, dict):
        raise EventError(f"{path}: must be an object")
    if not definition.json_keys.issuperset(data):
        unknown = sorted(set(data) - definition.json_keys)
        raise EventError(f"{path}: {', '.join(map(repr, unknown))} is not an item or group of group "
                         f"{definition.code} ({definition.name})")
    values = []
    for item in definition.items:
        value = data.get(item.key)
        if value is None:
            if item.presence == "mandatory":
                raise EventError(f"{path}.{item.key}: mandatory item {item.ref} {item.name} is missing")
            values.append("")
            continue
        if item.presence == "unused":
            raise EventError(f"{path}.{item.key}: item {item.ref} is not used in this flow")
        try:
            text = item.format.from_json(value)
        except ValueError as exc:
            raise EventError(f"{path}.{item.key} ({item.format.text}): {exc}") from exc
        if item.values is not None and text not in item.values:
            raise EventError(f"{path}.{item.key}: {text!r} is not a valid value")
        values.append(text)
    instance = GroupInstance(definition, tuple(values), 0)
    for child in definition.children:
        value = data.get(child.key)
        if value is None:
            entries: list[Any] = []
        elif child.single:
            entries = [value]
        elif isinstance(value, list):
            entries = value
        else:
            raise EventError(f"{path}.{child.key}: must be a list of group {child.code} objects")
        if not child.range.admits(len(entries)):
            raise EventError(f"{path}.{child.key}: group {child.code} must occur {child.range.text} times, "
                             f"found {len(entries)}")
        for index, entry in enumerate(entries):
            where = f"{path}.{child.key}" + ("" if child.single else f"[{index}]")
            instance.children.append(data_to_group(child, entry, where))
    return instance


def event_to_instance(event: Mapping[str, Any], definition: FlowDefinition) -> GroupInstance:
    """The level-1 group instance an event carries."""
    data = event.get("data")
    if not isinstance(data, dict) or len(data) != 1:
        raise EventError(f"event {event.get('id', '?')}: data must be an object with one level-1 group")
    ((key, value),) = data.items()
    for group in definition.level1:
        if group.key == key:
            return data_to_group(group, value, f"data.{key}")
    raise EventError(f"event {event.get('id', '?')}: {key!r} is not a level-1 group of {definition.reference}")


def definition_for(event: Mapping[str, Any], definitions: DefinitionSet) -> FlowDefinition:
    """The flow definition named by an event's `type`."""
    event_type = event.get("type")
    definition = definitions.by_event_type(event_type) if isinstance(event_type, str) else None
    if definition is None:
        raise EventError(f"event {event.get('id', '?')}: type {event_type!r} names no known flow "
                         "(expected uk.dtc.<flow>.v<version>)")
    return definition


FILE_ATTRIBUTES = ("type", "source", "dtcenvelope", "dtcfileid", "dtcfromrole", "dtcfrom", "dtctorole", "dtcto",
                    "dtccreated", "dtccompleted", "dtcchecksum", "dtctestflag")


def render_events(events: Iterable[Mapping[str, Any]], definitions: DefinitionSet) -> Iterator[str]:
    """The lines of the DTN file that the events of one file (in order) came from."""
    iterator = iter(events)
    first = next(iterator, None)
    if first is None:
        raise EventError("no events: a file needs at least one flow instance")
    definition = definition_for(first, definitions)
    header = header_of(first, definition)
    completed, checksum = trailer_of(first, header)
    writer = FlowFileWriter(header, dtn_checksum=checksum)
    yield writer.header()
    expected_count = first.get("dtcflowcount")
    event: Mapping[str, Any] | None = first
    position = 0
    while event is not None:
        position += 1
        for name in FILE_ATTRIBUTES:
            if event.get(name) != first.get(name):
                raise EventError(f"event {event.get('id', '?')}: {name} {event.get(name)!r} differs from the first "
                                 f"event's {first.get(name)!r}: events of several files cannot make one file")
        index = event.get("dtcindex", position)
        if index != position:
            raise EventError(f"event {event.get('id', '?')}: dtcindex is {index!r}, expected {position}: the "
                             "events must be the whole file, in order")
        yield from writer.instance(event_to_instance(event, definition))
        event = next(iterator, None)
    if expected_count is not None and expected_count != position:
        raise EventError(f"the events name a file of {expected_count} flow instances, but {position} were given")
    yield writer.trailer(completed)
