"""The outbound direction: signed canonical events from RabbitMQ -> DTN flow files for the gateway to send.

    delivery -> check (JSON, signature, flow, schema, envelope, governance; here or in worker processes)
             -> de-duplicate (ledger) -> batch
             -> write (ledger pending -> fsynced temp -> link -> ledger written) -> ack

Public API: `OutboundLoop(consumer, writer, checks).run(stop)`, `OutboundWriter(definitions, ledger, config)`
with `recover()`, and the check stages `InlineChecks(MessageChecker(definitions, trust, rules))` or
`bridge.outbound.workers.CheckWorkers(values, processes)`. See docs/outbound.md.
"""

from __future__ import annotations

from bridge.outbound.batching import Batcher, Held, ReadyFile
from bridge.outbound.check import (
    ENVELOPE_INVALID,
    INTERNAL_ERROR,
    JSON_AMBIGUOUS,
    MANIFEST_INVALID,
    NOT_JSON,
    SCHEMA_INVALID,
    UNKNOWN_FLOW,
    BatchKey,
    Checked,
    CheckedEvent,
    EventRejected,
    ManifestNotice,
    MessageChecker,
    Origin,
    Rejection,
    origin_key,
)
from bridge.outbound.loop import INCOMPLETE_FILE, OutboundLoop
from bridge.outbound.stages import CheckStage, InlineChecks
from bridge.outbound.writer import FILE_INVALID, FILE_NAME_INVALID, OutboundWriter, Recovery, dtn_timestamp

__all__ = [
    "ENVELOPE_INVALID",
    "FILE_INVALID",
    "FILE_NAME_INVALID",
    "INCOMPLETE_FILE",
    "INTERNAL_ERROR",
    "JSON_AMBIGUOUS",
    "MANIFEST_INVALID",
    "NOT_JSON",
    "SCHEMA_INVALID",
    "UNKNOWN_FLOW",
    "BatchKey",
    "Batcher",
    "CheckStage",
    "Checked",
    "CheckedEvent",
    "EventRejected",
    "Held",
    "InlineChecks",
    "ManifestNotice",
    "MessageChecker",
    "Origin",
    "OutboundLoop",
    "OutboundWriter",
    "ReadyFile",
    "Recovery",
    "Rejection",
    "dtn_timestamp",
    "origin_key",
]
