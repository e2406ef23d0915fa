"""The outbound direction: signed canonical events from RabbitMQ -> DTN flow files for the gateway to send.

    delivery -> verify (JSON, signature, flow, schema, envelope) -> de-duplicate (ledger) -> batch
             -> write (ledger pending -> fsynced temp -> link -> ledger written) -> ack

Public API: `OutboundLoop(consumer, writer).run(stop)` and `OutboundWriter(definitions, trust, ledger, config)`
with `recover()`. See docs/outbound.md.
"""

from __future__ import annotations

from bridge.outbound.batching import Batcher, Held, ReadyFile
from bridge.outbound.loop import INCOMPLETE_FILE, INTERNAL_ERROR, OutboundLoop
from bridge.outbound.verify import (
    ENVELOPE_INVALID,
    MANIFEST_INVALID,
    NOT_JSON,
    SCHEMA_INVALID,
    UNKNOWN_FLOW,
    BatchKey,
    EventRejected,
    EventVerifier,
    ManifestNotice,
    Origin,
    VerifiedEvent,
    origin_key,
)
from bridge.outbound.writer import FILE_INVALID, OutboundWriter, Recovery, dtn_timestamp

__all__ = [
    "ENVELOPE_INVALID",
    "FILE_INVALID",
    "INCOMPLETE_FILE",
    "INTERNAL_ERROR",
    "MANIFEST_INVALID",
    "NOT_JSON",
    "SCHEMA_INVALID",
    "UNKNOWN_FLOW",
    "BatchKey",
    "Batcher",
    "EventRejected",
    "EventVerifier",
    "Held",
    "ManifestNotice",
    "Origin",
    "OutboundLoop",
    "OutboundWriter",
    "ReadyFile",
    "Recovery",
    "VerifiedEvent",
    "dtn_timestamp",
    "origin_key",
]
