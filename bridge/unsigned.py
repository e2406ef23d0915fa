"""The inbound chain's build stage: a valid file -> its messages, governed and canonical, not yet signed.

    file (second pass) -> events -> governance (route, minimise) -> RFC 8785 bytes

It knows no broker and holds no key, so it runs in the daemon's process or in a worker process beside it
(bridge/adapters/worker.py) to use a second core; signing, which needs the key, stays with the publisher and costs one
signature per message over bytes that are already canonical.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, replace
from pathlib import Path

from bridge.dtn.reader import FlowFileReader, ValidFile
from bridge.flowfile import file_events
from bridge.rules import EventDecision, RuleSet, route_event
from bridge.signing import canonicalize


@dataclass(frozen=True, slots=True)
class UnsignedMessage:
    """One message to sign and publish (a worker process sends its fields as a tuple)."""

    routing_key: str
    canonical: bytes  # the event's RFC 8785 form: what the signature covers
    event_id: str  # the id of the file's event it comes from (minimised copies share it)
    decision: EventDecision | None = None  # on an event's first message: its governance decision, without outputs


def unsigned_messages(path: Path, checked: ValidFile, sha256: str, *, reader: FlowFileReader,
                      rules: RuleSet) -> Iterator[UnsignedMessage]:
    """Every message of a file the first pass found valid (and governance accepted), in file order."""
    # Runs of lines come as JSON fragments, unless a subscriber's copy must have items taken out of them.
    fragments = not rules.redacts(checked.definition.reference)
    for event in file_events(path, reader, checked, sha256, as_fragments=fragments):
        decision = route_event(event, "inbound", rules)
        if not decision.accepted:  # the file-level decision accepted it: a rule changed mid-file is a bug
            raise RuntimeError(f"governance refused an event of an accepted file: {decision.rule}")
        counted: EventDecision | None = replace(decision, outputs=())
        for output in decision.outputs:  # the full event, then any minimised copies (each signed on its own)
            yield UnsignedMessage(output.routing_key, canonicalize(output.event, known_types=True), event["id"],
                                  counted)
            counted = None
