"""The file manifest event (`uk.dtc.file.received`): published after every event of a file was confirmed.

It lets consumers and migration teams check that nothing was lost or changed: the file's identity, its counts, the
SHA-256 of the original bytes, and the first and last event ids. Its id is deterministic too (from the file's hash),
so a replay of the same file yields the same manifest id.
"""

from __future__ import annotations

import uuid
from typing import Any

from bridge.dtn.model import FileHeader
from bridge.events.envelope import EVENT_NAMESPACE, Event, dataschema_for, rfc3339, source_for

MANIFEST_TYPE = "uk.dtc.file.received.v1"  # versioned since its `data` has a schema (docs/events.md)
MANIFEST_TYPES = frozenset({MANIFEST_TYPE, "uk.dtc.file.received"})  # the unversioned type of older stored events
MANIFEST_SCHEMA = dataschema_for("file.received.v1")


def routing_key(direction: str, flow_reference: str, from_participant: str, to_participant: str) -> str:
    """`<direction>.<flow><version>.<from>.<to>`, e.g. inbound.D0010002.UDMS.MRCY (docs/operations.md)."""
    return f"{direction}.{flow_reference}.{from_participant}.{to_participant}"


def manifest_routing_key(flow_reference: str, from_participant: str, to_participant: str) -> str:
    """Manifests travel beside the flow events, under `file.received.<flow><version>.<from>.<to>`."""
    return routing_key("file.received", flow_reference, from_participant, to_participant)


def build_manifest(header: FileHeader, *, sha256: str, size: int, original_name: str, flow_count: int,
                   group_count: int, first_event_id: str, last_event_id: str,
                   warnings: list[dict[str, Any]] | None = None) -> Event:
    """The manifest event of one inbound file. `warnings`: the defects of checks set to `warn`, listed under
    `data.warnings` only when there are some, so that a file without any keeps the manifest it always had."""
    data: dict[str, Any] = {
        "file_identifier": header.file_identifier,
        "flow": header.flow_reference,
        "from_role": header.from_role,
        "from_participant": header.from_participant,
        "to_role": header.to_role,
        "to_participant": header.to_participant,
        "test_data_flag": header.test_data_flag,
        "created": header.created,
        "original_name": original_name,
        "size": size,
        "sha256": sha256,
        "flow_count": flow_count,
        "group_count": group_count,
        "events": flow_count,
        "first_event_id": first_event_id,
        "last_event_id": last_event_id,
    }
    if warnings:
        data["warnings"] = warnings
    return {
        "specversion": "1.0",
        "id": str(uuid.uuid5(EVENT_NAMESPACE, f"manifest|{sha256}")),
        "source": source_for(header.from_participant),
        "type": MANIFEST_TYPE,
        "time": rfc3339(header.created),
        "datacontenttype": "application/json",
        "dataschema": MANIFEST_SCHEMA,
        "dtcfileid": header.file_identifier,
        "dtcfrom": header.from_participant,
        "dtcto": header.to_participant,
        "data": data,
    }
