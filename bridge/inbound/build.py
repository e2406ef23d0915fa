"""The inbound chain's build stage: a valid file -> its messages, governed, canonical and signed, ready to publish.

    file (second pass) -> events -> governance (route, minimise) -> RFC 8785 bytes -> detached JWS

It knows no broker, so it runs in the daemon's process or in a worker process beside it (bridge/inbound/workers.py)
to use a second core. Signing belongs here rather than beside the publisher: after the parse it is a message's
largest cost, and the publisher's process spends its own core on the broker's protocol and the next file's check.
"""

from __future__ import annotations

from collections.abc import Callable, Generator
from dataclasses import dataclass, replace
from pathlib import Path

from bridge.dtn.reader import FlowFileReader
from bridge.dtn.valid import ValidFile
from bridge.inbound.flowfile import file_events
from bridge.rules import EventDecision, EventRouter, RuleSet
from bridge.signing import canonicalize

Sign = Callable[[bytes], bytes]  # an event's canonical bytes -> the signed event as JSON (Signer.signed_json)


@dataclass(frozen=True, slots=True)
class BuiltMessage:
    """One message to publish (a worker process sends its fields as a tuple)."""

    routing_key: str
    body: bytes  # the signed event as JSON
    event_id: str  # the id of the file's event it comes from (minimised copies share it)
    decision: EventDecision | None = None  # on an event's first message: its governance decision, without outputs


def built_messages(path: Path, checked: ValidFile, sha256: str, *, reader: FlowFileReader, rules: RuleSet,
                   sign: Sign, share: tuple[int, int] = (0, 1)) -> Generator[BuiltMessage, None, None]:
    """Every message of a file the first pass found valid (and governance accepted), in file order; with `share`,
    those of one part of its instances (see `file_events`)."""
    # Runs of lines come as JSON fragments, unless a subscriber's copy must have items taken out of them.
    fragments = not rules.redacts(checked.definition.reference)
    counted: dict[tuple[object, ...], EventDecision] = {}  # the events of a file mostly share one decision
    route = EventRouter("inbound", rules)
    for event in file_events(path, reader, checked, sha256, as_fragments=fragments, share=share):
        decision = route(event)
        if not decision.accepted:  # the file-level decision accepted it: a rule changed mid-file is a bug
            raise RuntimeError(f"governance refused an event of an accepted file: {decision.rule}")
        shape = (decision.rule, decision.outcome, decision.flow, decision.participant, decision.reason, decision.test)
        first: EventDecision | None = counted.get(shape) or counted.setdefault(shape, replace(decision, outputs=()))
        for output in decision.outputs:  # the full event, then any minimised copies (each signed on its own)
            yield BuiltMessage(output.routing_key, sign(canonicalize(output.event, known_types=True)), event["id"],
                               first)
            first = None
