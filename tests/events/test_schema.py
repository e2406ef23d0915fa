"""The published JSON Schemas match the definitions and describe the events the bridge makes."""

from __future__ import annotations

import orjson

from bridge.dtn.definitions import DefinitionSet
from bridge.events.schema import flow_schema
from tests.conftest import REPO


class TestSchemas:
    def test_published_schemas_are_current(self, definitions: DefinitionSet) -> None:
        """docs/schemas holds exactly what `dtn-bridge schemas` generates (regenerate after a definition change)."""
        folder = REPO / "docs" / "schemas"
        for reference, definition in definitions.items():
            published = orjson.loads((folder / f"{reference}.schema.json").read_bytes())
            assert published == flow_schema(definition), f"regenerate docs/schemas for {reference}"
        assert len(list(folder.glob("*.schema.json"))) == len(definitions)

    def test_required_items(self, definitions: DefinitionSet) -> None:
        """Mandatory items and groups are required; unused items are absent; the type is fixed."""
        schema = flow_schema(definitions["D0010002"])
        assert schema["properties"]["type"] == {"const": "uk.dtc.D0010.v002"}
        group = schema["properties"]["data"]["properties"]["mpan_cores"]
        assert group["required"] == ["mpan_core", "bsc_validation_status", "meter_reading_types"]
        reading = group["properties"]["meter_reading_types"]["items"]["properties"]["register_readings"]["items"]
        assert reading["properties"]["register_reading"]["pattern"] == "^[0-9]{1,8}(?:\\.[0-9]{1,1})?$"
        assert reading["properties"]["meter_reading_flag"]["type"] == "boolean"
