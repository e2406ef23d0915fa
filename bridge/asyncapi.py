"""The AsyncAPI 3.0 document of the bridge's event channels, for migration teams (`dtn-bridge asyncapi`).

Generated, never written by hand: the exchanges, queues and routing keys come from the topology (as data), the
payload of each flow's message from its JSON Schema (bridge/events/schema.py, made in process, not read from
docs/), so the document cannot drift from what the bridge publishes. docs/asyncapi.json is this document for the
default topology; a test fails when it is stale.
"""

from __future__ import annotations

from typing import Any

from bridge import __version__
from bridge.adapters.rabbitmq.topology import Topology
from bridge.dtn.definitions import DefinitionSet
from bridge.events.manifest import MANIFEST_TYPE
from bridge.events.schema import flow_schema, manifest_schema
from bridge.ports import CLOUDEVENTS_JSON

ASYNCAPI_VERSION = "3.0.0"
AMQP_BINDING = "0.3.0"
# Our schemas say JSON Schema 2020-12 but use only keywords draft-07 has: AsyncAPI 3.0 names draft-07, not 2020-12
SCHEMA_FORMAT = "application/schema+json;version=draft-07"
MANIFEST_MESSAGE = "FileReceived"
DEAD_LETTER_HEADERS = {
    "x-dtn-reject-code": "why the bridge refused the event, a stable code (e.g. bad_signature, schema_invalid, "
                         "unknown_flow, envelope_invalid, manifest_invalid)",
    "x-dtn-reject-reason": "the reason in words",
    "x-dtn-original-routing-key": "the routing key the event was published with",
}
_STRUCTURED = ("Structured mode only: the whole CloudEvent is the JSON body (content type "
               "application/cloudevents+json). Binary mode would carry the attributes as AMQP headers, which turns "
               "dtcindex and dtcflowcount into strings and breaks the signature (docs/events.md).")


def asyncapi_document(definitions: DefinitionSet, topology: Topology) -> dict[str, Any]:
    """The whole AsyncAPI 3.0 document: every flow version's message, the manifest, the dead-letter messages."""
    references = list(definitions)
    flow_messages = {reference: _ref("messages", reference) for reference in references}
    schemas: dict[str, Any] = {reference: _payload(flow_schema(definitions[reference])) for reference in references}
    schemas[MANIFEST_MESSAGE] = _payload(manifest_schema())
    messages: dict[str, Any] = {reference: _flow_message(reference, definitions) for reference in references}
    messages[MANIFEST_MESSAGE] = {
        "name": MANIFEST_MESSAGE, "title": f"File manifest ({MANIFEST_TYPE})", "contentType": CLOUDEVENTS_JSON,
        "summary": "Published after every event of an inbound file was confirmed: what the file was (identity, "
                   "counts, SHA-256 of its bytes, first and last event id).",
        "payload": _ref("schemas", MANIFEST_MESSAGE), "correlationId": _CORRELATION,
        "bindings": _MESSAGE_BINDING,
    }
    messages["Rejected"] = {
        "name": "Rejected", "title": "A refused outbound event, dead-lettered",
        "summary": "The message as it arrived (body and headers kept), with why it was refused.",
        "headers": {"type": "object", "required": list(DEAD_LETTER_HEADERS), "properties": {
            name: {"type": "string", "description": text} for name, text in DEAD_LETTER_HEADERS.items()}},
        "payload": {"description": "the original body, unchanged (it may not even be JSON)"},
        "correlationId": _CORRELATION,
    }
    flow = {"description": "flow and version, e.g. D0010002", "enum": references}
    participants = {"from": {"description": "the sending market participant id (MPID), e.g. UDMS"},
                    "to": {"description": "the receiving market participant id (MPID), e.g. MRCY"}}
    parameters = {"flow": flow, **participants}
    exchange = _exchange(topology.exchange)
    channels: dict[str, Any] = {
        "flowEvents": {
            "address": "inbound.{flow}.{from}.{to}", "title": "Flow events",
            "description": "One signed CloudEvent per flow instance of an inbound DTN file. " + _STRUCTURED,
            "parameters": parameters, "messages": flow_messages, "bindings": exchange,
        },
        "manifests": {
            "address": "file.received.{flow}.{from}.{to}", "title": "File manifests",
            "description": "One per inbound file, after its flow events.", "parameters": parameters,
            "messages": {MANIFEST_MESSAGE: _ref("messages", MANIFEST_MESSAGE)}, "bindings": exchange,
        },
        "outboundEvents": {
            "address": "outbound.{flow}.{from}.{to}", "title": "Outbound events",
            "description": "Signed events systems publish for DTN participants; the bridge verifies them and writes "
                           "each source file back (byte for byte) or a new file per batch (docs/outbound.md). Also "
                           "the manifests of files routed back. " + _STRUCTURED,
            "parameters": parameters,
            "messages": {**flow_messages, MANIFEST_MESSAGE: _ref("messages", MANIFEST_MESSAGE)},
            "bindings": exchange,
        },
    }
    all_events = {**flow_messages, MANIFEST_MESSAGE: _ref("messages", MANIFEST_MESSAGE)}
    rejected = {"Rejected": _ref("messages", "Rejected")}
    queues = [
        ("eventStore", topology.store_queue, ("The event store: a stream of every event and manifest published "
         f"(bound with {topology.store_binding_key!r}); `dtn-bridge replay` reads it from a time."), all_events),
        ("outboundQueue", topology.outbound_queue, ("What the bridge consumes: bound to the events exchange with "
         f"{topology.outbound_binding_key!r}."), all_events),
        ("outboundRejected", topology.outbound_rejected_queue, ("Refused outbound events, dead-lettered under "
         f"{topology.outbound_rejected_routing_key!r} with the reason in headers."), rejected),
        ("deadLetter", topology.dead_letter_queue, ("Every dead-lettered message (bound to the dead-letter exchange "
         f"with {topology.dead_letter_binding_key!r})."), rejected),
    ]
    for name, queue, description, queue_messages in queues:
        if queue is not None:
            channels[name] = {"address": queue, "title": f"Queue {queue}", "description": description,
                              "messages": queue_messages, "bindings": _queue(queue)}
    channels["rejections"] = {
        "address": topology.outbound_rejected_routing_key, "title": "Rejections",
        "description": "Refused outbound events, published to the dead-letter exchange "
                       f"{topology.dead_letter_exchange!r}.",
        "messages": rejected, "bindings": _exchange(topology.dead_letter_exchange),
    }
    return {
        "asyncapi": ASYNCAPI_VERSION,
        "info": {
            "title": "dtn-bridge",
            "version": __version__,
            "description": "The event channels of dtn-bridge: GB electricity market DTN flow files <-> signed "
                           "CloudEvents 1.0 on RabbitMQ (docs/events.md, docs/operations.md). " + _STRUCTURED,
            "license": {"name": "see the project's LICENSE"},
        },
        "defaultContentType": CLOUDEVENTS_JSON,
        "servers": {"rabbitmq": {
            "host": "{host}:{port}", "protocol": "amqp", "protocolVersion": "0.9.1",
            "description": "The RabbitMQ the bridge is configured with (broker.urls); amqps with mutual TLS in "
                           "production (docs/security.md).",
            "variables": {"host": {"default": "localhost"}, "port": {"default": "5672", "enum": ["5672", "5671"]}},
        }},
        "channels": channels,
        "operations": _operations(topology),
        "components": {"schemas": schemas, "messages": messages},
    }


_CORRELATION = {"description": "the AMQP message_id is the event id", "location": "$message.payload#/id"}
_MESSAGE_BINDING = {"amqp": {"contentEncoding": "utf-8", "bindingVersion": AMQP_BINDING}}


def _operations(topology: Topology) -> dict[str, Any]:
    publish = {"amqp": {"deliveryMode": 2, "mandatory": True, "timestamp": True, "bindingVersion": AMQP_BINDING}}
    consume = {"amqp": {"ack": True, "bindingVersion": AMQP_BINDING}}
    operations: dict[str, Any] = {
        "publishFlowEvents": {"action": "send", "channel": _ref("channels", "flowEvents"), "bindings": publish,
                              "summary": "Each flow instance of a valid inbound file, signed, confirmed by the "
                                         "broker before the file is archived."},
        "publishManifests": {"action": "send", "channel": _ref("channels", "manifests"), "bindings": publish,
                             "summary": "The file's manifest, after all its events were confirmed."},
        "sendRejections": {"action": "send", "channel": _ref("channels", "rejections"), "bindings": publish,
                           "summary": "A refused outbound event, with the reason in headers."},
    }
    if topology.outbound_queue is not None:
        operations["receiveOutbound"] = {
            "action": "receive", "channel": _ref("channels", "outboundQueue"), "bindings": consume,
            "summary": "Verify, govern, batch and write outbound events as DTN files; ack after the write."}
    if topology.store_queue is not None:
        operations["replayStore"] = {
            "action": "receive", "channel": _ref("channels", "eventStore"), "bindings": consume,
            "summary": "`dtn-bridge replay`: rebuild files or republish events from a time."}
    return operations


def _flow_message(reference: str, definitions: DefinitionSet) -> dict[str, Any]:
    name, _groups, _levels, _routes = definitions.outline(reference)
    return {"name": reference, "title": f"{reference[:5]} v{reference[5:]} {name}", "contentType": CLOUDEVENTS_JSON,
            "summary": f"One flow instance of a {reference} file: type uk.dtc.{reference[:5]}.v{reference[5:]}, "
                       f"dataschema urn:dtn-bridge:schema:{reference}.",
            "payload": _ref("schemas", reference), "correlationId": _CORRELATION, "bindings": _MESSAGE_BINDING}


def _payload(schema: dict[str, Any]) -> dict[str, Any]:
    """A JSON Schema as an AsyncAPI multi-format schema (draft-07: our schemas use no keyword it lacks)."""
    return {"schemaFormat": SCHEMA_FORMAT, "schema": {key: value for key, value in schema.items() if key != "$schema"}}


def _exchange(name: str) -> dict[str, Any]:
    return {"amqp": {"is": "routingKey", "exchange": {"name": name, "type": "topic", "durable": True,
                                                      "autoDelete": False, "vhost": "/"},
                     "bindingVersion": AMQP_BINDING}}


def _queue(name: str) -> dict[str, Any]:
    return {"amqp": {"is": "queue", "queue": {"name": name, "durable": True, "exclusive": False, "autoDelete": False,
                                              "vhost": "/"}, "bindingVersion": AMQP_BINDING}}


def _ref(section: str, name: str) -> dict[str, str]:
    where = "#/channels/" if section == "channels" else f"#/components/{section}/"
    return {"$ref": where + name}
