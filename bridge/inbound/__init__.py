"""The inbound direction: DTN flow files dropped by the gateway -> signed canonical events on RabbitMQ.

    claimed file -> first pass (flowfile) -> defects? quarantine
                 -> build (build: events, governance, canonical form, signature; here or in worker processes)
                 -> publish -> manifest -> archive                                       (pipeline)

Public API: `InboundPipeline(...).process(claim)` for one claimed file, `InboundLoop` (loop) for the daemon's
watch -> claim -> settle loop, and the build stages `built_messages` (inline) or `BuildWorker` (workers). The
composition root (bridge/service.py) hands them their adapters and plain values. See docs/service.md.
"""

from __future__ import annotations

from bridge.inbound.build import BuiltMessage, built_messages
from bridge.inbound.pipeline import BuildStage, FileOutcome, InboundPipeline

__all__ = ["BuildStage", "BuiltMessage", "FileOutcome", "InboundPipeline", "built_messages"]
