"""The published JSON Schemas match the definitions and describe the events the bridge makes."""

from __future__ import annotations

import hashlib

import jsonschema
import orjson

from bridge.dtn.definitions import DefinitionSet
from bridge.dtn.reader import FlowFileReader
from bridge.events.manifest import build_manifest
from bridge.events.schema import flow_schema, manifest_schema
from bridge.inbound.flowfile import check_file, file_events
from tests.conftest import EXAMPLES, REPO


class TestSchemas:
    def test_published_schemas_are_current(self, definitions: DefinitionSet) -> None:
        """docs/schemas holds exactly what `dtn-bridge schemas` generates (regenerate after a definition change)."""
        folder = REPO / "docs" / "schemas"
        for reference, definition in definitions.items():
            published = orjson.loads((folder / f"{reference}.schema.json").read_bytes())
            assert published == flow_schema(definition), f"regenerate docs/schemas for {reference}"
        assert orjson.loads((folder / "file.received.v1.schema.json").read_bytes()) == manifest_schema()
        assert len(list(folder.glob("*.schema.json"))) == len(definitions) + 1  # and the manifest's

    def test_required_items(self, definitions: DefinitionSet) -> None:
        """Mandatory items and groups are required; unused items are absent; the type is fixed."""
        schema = flow_schema(definitions["D0010002"])
        assert schema["properties"]["type"] == {"const": "uk.dtc.D0010.v002"}
        group = schema["properties"]["data"]["properties"]["mpan_cores"]
        assert group["required"] == ["mpan_core", "bsc_validation_status", "meter_reading_types"]
        reading = group["properties"]["meter_reading_types"]["items"]["properties"]["register_readings"]["items"]
        assert reading["properties"]["register_reading"]["pattern"] == "^[0-9]{1,8}(?:\\.[0-9]{1,1})?$"
        assert reading["properties"]["meter_reading_flag"]["type"] == "boolean"


class TestDataschema:
    def test_events_name_their_schema(self, reader: FlowFileReader) -> None:
        """Each event's `dataschema` is the `$id` of its flow version's schema, and the event (and its file's
        manifest) validate against the schema they name."""
        for name in ("D0010002.txt", "D0275001.txt", "P0142001.txt"):
            path = EXAMPLES / name
            checked = check_file(path, reader)
            events = list(file_events(path, reader, checked))
            schema = flow_schema(reader.definitions[path.stem])
            named = {event["dataschema"] for event in events}
            assert named == {schema["$id"]} == {f"urn:dtn-bridge:schema:{path.stem}"}
            for event in events:
                jsonschema.Draft202012Validator(schema).validate(event)
            assert checked.header is not None
            data = path.read_bytes()
            manifest = build_manifest(checked.header, sha256=hashlib.sha256(data).hexdigest(), size=len(data),
                                      original_name=name, flow_count=checked.flow_count,
                                      group_count=checked.group_count, first_event_id=events[0]["id"],
                                      last_event_id=events[-1]["id"],
                                      warnings=[{"rule": "r", "message": "m", "line": 2, "text": "t"}])
            assert manifest["type"] == "uk.dtc.file.received.v1"
            assert manifest["dataschema"] == manifest_schema()["$id"] == "urn:dtn-bridge:schema:file.received.v1"
            jsonschema.Draft202012Validator(manifest_schema()).validate(manifest)

    def test_schema_refuses_another_dataschema(self, reader: FlowFileReader) -> None:
        """The schema pins `dataschema` when present; an event stored before it (without one) is still valid."""
        path = EXAMPLES / "D0010002.txt"
        event = next(iter(file_events(path, reader, check_file(path, reader))))
        validator = jsonschema.Draft202012Validator(flow_schema(reader.definitions["D0010002"]))
        assert validator.is_valid(event)
        assert validator.is_valid({name: value for name, value in event.items() if name != "dataschema"})
        assert not validator.is_valid(event | {"dataschema": "urn:dtn-bridge:schema:D0275001"})
