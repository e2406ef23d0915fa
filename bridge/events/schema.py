"""JSON Schema (2020-12) of a flow's events, generated from its definition, for consumers in any language."""

from __future__ import annotations

from typing import Any

from bridge.dtn.compiled import DataItem, FlowDefinition, GroupDefinition
from bridge.dtn.formats import CONTROL_RANGE, INT_DIGITS_AS_NUMBER
from bridge.events.envelope import dataschema_for
from bridge.events.manifest import MANIFEST_SCHEMA, MANIFEST_TYPE

_ISO = {
    "DATE": {"type": "string", "format": "date", "pattern": "^[0-9]{4}-[0-9]{2}-[0-9]{2}$"},
    "DATETIME": {"type": "string", "pattern": "^[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}$",
                 "description": "local date and time as written in the file (no offset)"},
    "TIME": {"type": "string", "pattern": "^[0-9]{2}:[0-9]{2}:[0-9]{2}$"},
    "BOOLEAN": {"type": "boolean"},
}


def item_schema(item: DataItem) -> dict[str, Any]:
    """The schema of one data item's event value."""
    logical = item.format
    schema: dict[str, Any]
    if logical.kind in _ISO:
        schema = dict(_ISO[logical.kind])
    elif logical.kind == "INT":
        length = logical.length or 1
        schema = {"oneOf": [{"type": "integer", "minimum": 0, "maximum": 10**min(length, INT_DIGITS_AS_NUMBER) - 1},
                            {"type": "string", "pattern": f"^0[0-9]{{0,{length - 1}}}$",
                             "description": "zero-padded as written in the file"}]}
        if length > INT_DIGITS_AS_NUMBER:
            schema["oneOf"].append({"type": "string", "pattern": f"^[1-9][0-9]{{{INT_DIGITS_AS_NUMBER},{length - 1}}}$",
                                    "description": f"more than {INT_DIGITS_AS_NUMBER} digits: a string, as written"})
    elif logical.kind == "NUM":
        schema = {"type": "string", "pattern": f"^{logical.pattern}$",
                  "description": "a decimal as written in the file, keeping its scale"}
    else:
        schema = {"type": "string", "minLength": 1, "maxLength": logical.length, "pattern": f"^[^|{CONTROL_RANGE}]*$"}
    if item.values is not None:
        schema = {**schema, "enum": list(item.values)}
    title = f"{item.ref} {item.name}" if item.ref else item.name
    return {"title": title, "x-dtc-format": logical.text, **schema}


def group_schema(group: GroupDefinition) -> dict[str, Any]:
    """The schema of a group instance object."""
    properties: dict[str, Any] = {item.key: item_schema(item) for item in group.items if item.presence != "unused"}
    for child in group.children:
        child_schema = group_schema(child)
        if child.single:
            properties[child.key] = child_schema
        else:
            array: dict[str, Any] = {"type": "array", "items": child_schema}
            if child.range.minimum:
                array["minItems"] = child.range.minimum
            if child.range.maximum is not None:
                array["maxItems"] = child.range.maximum
            properties[child.key] = array
    required = [item.key for item in group.items if item.presence == "mandatory"]
    required += [child.key for child in group.children if child.range.minimum > 0]
    schema: dict[str, Any] = {"title": f"{group.code} {group.name}", "type": "object", "properties": properties,
                              "additionalProperties": False}
    if required:
        schema["required"] = required
    return schema


def flow_schema(definition: FlowDefinition) -> dict[str, Any]:
    """The schema of a whole event of this flow: CloudEvents attributes and `data`."""
    data_options = [{"type": "object", "properties": {group.key: group_schema(group)}, "required": [group.key],
                     "additionalProperties": False} for group in definition.level1]
    string = {"type": "string"}
    return {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "$id": dataschema_for(definition.reference),
        "title": f"{definition.flow} v{definition.version} {definition.name}",
        "type": "object",
        "required": ["specversion", "id", "source", "type", "data", "dtcfileid", "dtcfrom", "dtcto", "dtcindex"],
        "properties": {
            "specversion": {"const": "1.0"},
            "id": string,
            "source": {"type": "string", "pattern": "^urn:mpid:[A-Z0-9]{1,4}$"},
            "type": {"const": definition.event_type},
            "time": {"type": "string", "format": "date-time"},
            "datacontenttype": {"const": "application/json"},
            "dataschema": {"const": dataschema_for(definition.reference)},
            "subject": string,
            "dtcenvelope": string, "dtcfileid": string, "dtcfromrole": string, "dtcfrom": string,
            "dtctorole": string, "dtcto": string, "dtccreated": string, "dtccompleted": string,
            "dtctestflag": string, "dtcindex": {"type": "integer", "minimum": 1},
            "dtcflowcount": {"type": "integer", "minimum": 1}, "signature": string,
            "data": data_options[0] if len(data_options) == 1 else {"oneOf": data_options},
        },
    }


def manifest_schema() -> dict[str, Any]:
    """The schema of the file manifest event (bridge/events/manifest.py; docs/events.md)."""
    string, text = {"type": "string"}, {"type": "string", "minLength": 1}
    count = {"type": "integer", "minimum": 0}
    warning = {"type": "object", "required": ["rule", "message", "text"], "properties": {
        "rule": string, "message": string, "line": count, "group": string, "item": count, "item_key": string,
        "item_format": string, "text": string}, "additionalProperties": False}
    data = {
        "type": "object",
        "required": ["file_identifier", "flow", "from_participant", "to_participant", "sha256", "size",
                     "flow_count", "events", "first_event_id", "last_event_id"],
        "properties": {
            "file_identifier": string, "flow": text, "from_role": string, "from_participant": text,
            "to_role": string, "to_participant": text, "test_data_flag": string, "created": string,
            "original_name": string, "size": count, "sha256": {"type": "string", "pattern": "^[0-9a-f]{64}$"},
            "flow_count": count, "group_count": count, "events": count, "first_event_id": text,
            "last_event_id": text, "warnings": {"type": "array", "items": warning, "maxItems": 100},
        },
        "additionalProperties": False,
    }
    return {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "$id": MANIFEST_SCHEMA,
        "title": "The file manifest: one per inbound file, after all its events were confirmed",
        "type": "object",
        "required": ["specversion", "id", "source", "type", "data", "dtcfileid", "dtcfrom", "dtcto"],
        "properties": {
            "specversion": {"const": "1.0"},
            "id": string,
            "source": {"type": "string", "pattern": "^urn:mpid:[A-Z0-9]{1,4}$"},
            "type": {"const": MANIFEST_TYPE},
            "time": {"type": "string", "format": "date-time"},
            "datacontenttype": {"const": "application/json"},
            "dataschema": {"const": MANIFEST_SCHEMA},
            "dtcfileid": string, "dtcfrom": string, "dtcto": string, "signature": string,
            "data": data,
        },
    }
