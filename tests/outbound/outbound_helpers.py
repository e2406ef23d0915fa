"""Helpers shared by the outbound tests (and the crash child process): events of files, new events, loops."""

from __future__ import annotations

import hashlib
import json
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import orjson

from bridge.config import BridgeConfig, load_config
from bridge.dtn.reader import FlowFileReader
from bridge.events.envelope import Event
from bridge.events.manifest import MANIFEST_TYPES, build_manifest, routing_key
from bridge.inbound.flowfile import check_file, file_events
from bridge.outbound import OutboundLoop
from bridge.ports import OutgoingMessage
from bridge.signing import Signer
from tests.conftest import REPO

VALID_SAMPLES = ["DTC5259515123502080915D0010", "ocdiff_D0155001_a", "ocdiff_D0155001_b",
                 "OVOE1359", "OVOE1429"]


class FakeClock:
    """An aware clock that stands still unless advanced (file timestamps become predictable)."""

    def __init__(self, start: datetime = datetime(2024, 7, 1, 11, 30, 5, tzinfo=UTC)) -> None:
        self.now = start

    def __call__(self) -> datetime:
        return self.now

    def advance(self, **kwargs: float) -> None:
        self.now += timedelta(**kwargs)


@dataclass
class SourceFile:
    """A DTN file read back into events, plus its manifest."""

    path: Path
    events: list[Event]
    manifest: Event


def source_file(path: Path, reader: FlowFileReader) -> SourceFile:
    checked = check_file(path, reader)
    assert checked.ok, checked.describe_defects()
    events = list(file_events(path, reader, checked))
    assert checked.header is not None
    data = path.read_bytes()
    manifest = build_manifest(checked.header, sha256=hashlib.sha256(data).hexdigest(), size=len(data),
                              original_name=path.name, flow_count=checked.flow_count,
                              group_count=checked.group_count, first_event_id=events[0]["id"],
                              last_event_id=events[-1]["id"])
    return SourceFile(path, events, manifest)


def key_of(event: Event) -> str:
    """`outbound.<flow><version>.<from>.<to>` for a flow event (manifests: their data's flow)."""
    if event["type"] in MANIFEST_TYPES:
        data = event["data"]
        return routing_key("outbound", data["flow"], data["from_participant"], data["to_participant"])
    flow = event["type"].split(".")[2] + event["type"].split(".v")[1]
    return routing_key("outbound", flow, event["dtcfrom"], event["dtcto"])


def message(event: Event, signer: Signer | None = None, *, body: bytes | None = None) -> OutgoingMessage:
    """The message of an event, signed when `signer` is given."""
    signed = signer.sign(event) if signer is not None else event
    return OutgoingMessage(key_of(event), body if body is not None else orjson.dumps(signed), event["id"])


def new_event(template: Event, number: int, *, to: str = "SYNB", test_flag: str = "OPER") -> Event:
    """A system-made event: the data of `template` without any source file envelope, a fresh id."""
    return {
        "specversion": "1.0",
        "id": f"new-{number:06d}-{template['id']}",
        "source": template["source"],
        "type": template["type"],
        "datacontenttype": "application/json",
        "dtcfromrole": template["dtcfromrole"],
        "dtcfrom": template["dtcfrom"],
        "dtctorole": template["dtctorole"],
        "dtcto": to,
        "dtctestflag": test_flag,
        "data": template["data"],
    }


def key(event: Event) -> tuple[str, str]:
    """An event's identity in the ledger: (source, id)."""
    return (event["source"], event["id"])


def visible_files(folder: Path) -> list[Path]:
    """What the gateway would pick up: every non-hidden regular file."""
    return sorted(p for p in folder.iterdir() if p.is_file() and not p.name.startswith("."))



@contextmanager
def running(loop: OutboundLoop) -> Iterator[threading.Event]:
    """Run `loop` in a thread; stop it (and join) on exit."""
    stop = threading.Event()
    errors: list[BaseException] = []

    def target() -> None:
        try:
            loop.run(stop)
        except BaseException as exc:  # noqa: BLE001 (surfaced in the test thread)
            errors.append(exc)

    thread = threading.Thread(target=target, name="outbound-loop", daemon=True)
    thread.start()
    try:
        yield stop
    finally:
        stop.set()
        thread.join(30)
        assert not thread.is_alive(), "the loop did not stop"
        if errors:
            raise errors[0]


def loads(path: Path) -> Any:
    return orjson.loads(path.read_bytes())



def numbered_events(template: Event, count: int, *, start: int = 0, **options: Any) -> list[Event]:
    """`count` new events whose first meter id is `M<number>` (so each instance can be found in a file)."""
    events = []
    for number in range(start, start + count):
        event = new_event(template, number, **options)
        data = orjson.loads(orjson.dumps(event["data"]))
        data["mpan_cores"]["meter_reading_types"][0]["meter_id"] = f"M{number:07d}"
        event["data"] = data
        events.append(event)
    return events


def meter_ids(path: Path, reader: FlowFileReader) -> list[str]:
    """The first meter id of every flow instance of a (valid) D0010 file."""
    checked = check_file(path, reader)
    assert checked.ok, (path.name, checked.describe_defects())
    return [event["data"]["mpan_cores"]["meter_reading_types"][0]["meter_id"]
            for event in file_events(path, reader, checked)]


RULES: dict[str, Any] = {"participants": {"outbound": {"deny": ["SYNC"]}}}


def check_config(folder: Path, signer: Signer) -> BridgeConfig:
    """What check workers load: a trust store holding `signer`'s key, and one governance rule (no SYNC recipient),
    so that decisions are seen to cross the pipe too."""
    (folder / "trust.jwks.json").write_text(json.dumps(signer.public_jwks()))
    path = folder / "bridge.yaml"
    path.write_text(json.dumps({"participant": {"id": "SYNA", "role": "X"},
                                "flows": {"definitions": str(REPO / "flow_definitions")},
                                "signing": {"trust": str(folder / "trust.jwks.json")}, "rules": RULES,
                                "log": {"level": "warning", "format": "json"}}))
    return load_config(path)
