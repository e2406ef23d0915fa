"""`dtn-bridge asyncapi`: an AsyncAPI 3.0 document of the bridge's channels, valid against the official AsyncAPI 3.0
JSON Schema (tests/data/asyncapi/3.0.0.json, vendored from the npm package @asyncapi/specs 6.11.1, Apache 2.0),
whose message payloads accept the events the bridge really makes; docs/asyncapi.json is current."""

from __future__ import annotations

import copy
import hashlib
from pathlib import Path
from typing import Any

import jsonschema
import orjson
import pytest
import yaml

from bridge.adapters.rabbitmq.topology import Topology
from bridge.asyncapi import asyncapi_document
from bridge.cli import main
from bridge.dtn.definitions import DefinitionSet
from bridge.dtn.reader import FlowFileReader
from bridge.events.manifest import build_manifest, manifest_routing_key, routing_key
from bridge.inbound.flowfile import check_file, file_events
from tests.conftest import EXAMPLES, REPO

OFFICIAL = REPO / "tests" / "data" / "asyncapi" / "3.0.0.json"
PUBLISHED = REPO / "docs" / "asyncapi.json"


@pytest.fixture(scope="module")
def document(definitions: DefinitionSet) -> dict[str, Any]:
    return asyncapi_document(definitions, Topology())


@pytest.fixture(scope="module")
def official() -> jsonschema.Draft7Validator:
    return jsonschema.Draft7Validator(orjson.loads(OFFICIAL.read_bytes()))


def test_valid_against_the_official_schema(document: dict[str, Any], official: jsonschema.Draft7Validator) -> None:
    """Valid AsyncAPI 3.0; and the validator does look inside (a broken operation or binding is caught)."""
    assert [error.message for error in official.iter_errors(document)] == []
    broken = copy.deepcopy(document)
    del broken["operations"]["publishFlowEvents"]["action"]
    broken["channels"]["flowEvents"]["bindings"]["amqp"]["is"] = "topic"
    assert len(list(official.iter_errors(broken))) >= 2


def test_the_published_document_is_current(document: dict[str, Any]) -> None:
    """docs/asyncapi.json is what `dtn-bridge asyncapi --out docs/asyncapi.json` writes (run it after changing a
    definition or the topology)."""
    assert orjson.loads(PUBLISHED.read_bytes()) == document, "run: dtn-bridge asyncapi --out docs/asyncapi.json"


def test_what_it_describes(document: dict[str, Any], definitions: DefinitionSet) -> None:
    """Every flow version has a message on the flow event channel; the exchange, queues and dead-letter messages
    are those of the topology."""
    channels = document["channels"]
    assert set(channels["flowEvents"]["messages"]) == set(definitions)
    assert channels["flowEvents"]["parameters"]["flow"]["enum"] == list(definitions)
    assert channels["flowEvents"]["bindings"]["amqp"]["exchange"]["name"] == "dtn.events"
    assert {channels[name]["address"] for name in ("eventStore", "outboundQueue", "outboundRejected")} \
        == {"dtn.events.store", "dtn.outbound", "dtn.outbound.rejected"}
    assert "deadLetter" not in channels  # refused events are kept once, in dtn.outbound.rejected
    rejected = document["components"]["messages"]["Rejected"]
    assert set(rejected["headers"]["required"]) == {"x-dtn-reject-code", "x-dtn-reject-reason",
                                                    "x-dtn-original-routing-key"}
    assert document["operations"]["receiveOutbound"]["action"] == "receive"


def address_matches(address: str, key: str) -> bool:
    """Whether a routing key fits a channel address with {parameters} (one word each)."""
    parts, words = address.split("."), key.split(".")
    return len(parts) == len(words) and all(part.startswith("{") or part == word for part, word in zip(parts, words))


def test_real_events_fit_their_messages(document: dict[str, Any], reader: FlowFileReader) -> None:
    """The events and the manifest of real files validate against the payloads the document gives their messages,
    and their routing keys fit the channel addresses."""
    schemas = document["components"]["schemas"]
    for name in ("D0010002.txt", "D0275001.txt"):
        path = EXAMPLES / name
        checked = check_file(path, reader)
        events = list(file_events(path, reader, checked))
        payload = schemas[path.stem]
        assert payload["schemaFormat"] == "application/schema+json;version=draft-07"
        for event in events:
            jsonschema.Draft7Validator(payload["schema"]).validate(event)
        assert checked.header is not None
        header = checked.header
        key = routing_key("inbound", path.stem, header.from_participant, header.to_participant)
        assert address_matches(document["channels"]["flowEvents"]["address"], key)
        data = path.read_bytes()
        manifest = build_manifest(header, sha256=hashlib.sha256(data).hexdigest(), size=len(data),
                                  original_name=name, flow_count=checked.flow_count, group_count=checked.group_count,
                                  first_event_id=events[0]["id"], last_event_id=events[-1]["id"])
        jsonschema.Draft7Validator(schemas["FileReceived"]["schema"]).validate(manifest)
        key = manifest_routing_key(path.stem, header.from_participant, header.to_participant)
        assert address_matches(document["channels"]["manifests"]["address"], key)


def test_command(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """`asyncapi --out FILE.yaml` writes YAML, `--check` says whether a file is current, and `--config` describes
    that configuration's topology (its suffixed names)."""
    flows = tmp_path / "flows"  # the operator's own definition of a new flow version, beside the shipped ones
    flows.mkdir()
    (flows / "D0010099.yaml").write_bytes((REPO / "flow_definitions" / "D0010002.yaml").read_bytes()
                                          .replace(b"version: '002'", b"version: '099'"))
    config = tmp_path / "bridge.yaml"
    config.write_text(orjson.dumps({"broker": {"topology_suffix": ".t1"}, "watch": {"inbound": "in"},
                                    "flows": {"definitions": str(flows)}}).decode())
    out = tmp_path / "asyncapi.yaml"
    assert main(["asyncapi", "--config", str(config), "--out", str(out)]) == 0
    written = yaml.load(out.read_text(), Loader=getattr(yaml, "CSafeLoader", yaml.SafeLoader))
    assert written["asyncapi"] == "3.0.0"
    assert written["channels"]["outboundQueue"]["address"] == "dtn.outbound.t1"
    shipped = {path.stem for path in (REPO / "flow_definitions").glob("*.yaml")}
    assert set(written["components"]["schemas"]) == shipped | {"D0010099", "FileReceived"}
    assert main(["asyncapi", "--config", str(config), "--out", str(out), "--check"]) == 0
    out.write_text(out.read_text().replace("dtn.outbound.t1", "dtn.outbound"))
    assert main(["asyncapi", "--config", str(config), "--out", str(out), "--check"]) == 1
    assert "not current" in capsys.readouterr().err
