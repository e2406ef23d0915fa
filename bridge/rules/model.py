"""Values of the governance stage: the compiled rule set, the facts it judges and the decisions it makes.

Everything here is frozen: a `RuleSet` is built once per (re)load by `parse_rules` and shared by every thread of
the pipeline, and a decision is a value the caller counts, logs and acts on (quarantine, dead-letter, publish).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any, Literal

from bridge.dtn.definitions import DefinitionSet
from bridge.dtn.model import FileHeader

Direction = Literal["inbound", "outbound"]
Outcome = Literal["accept", "warn", "reject"]

# Stable rule ids: metric labels, quarantine reports and dead-letter headers carry them (docs/governance.md).
RULE_ACCEPTED = "accepted"
RULE_TEST_ROUTED = "test_data.routed"
RULE_MALFORMED = "event.malformed"
RULE_UNKNOWN_FLOW = "flow.unknown"
RULE_ADDRESSEE = "addressee"
RULE_SENDER = "sender"
RULE_DENIED = "participant.denied"
RULE_NOT_ALLOWED = "participant.not_allowed"
RULE_ROUTE = "route.forbidden"
RULE_UNROUTED = "route.unrouted"
RULE_TEST_REJECTED = "test_data.rejected"
RULE_FILE_BYTES = "limit.file_bytes"
RULE_FLOW_INSTANCES = "limit.flow_instances"
RULE_EVENT_BYTES = "limit.event_bytes"

RULES: tuple[str, ...] = (
    RULE_ACCEPTED, RULE_TEST_ROUTED, RULE_MALFORMED, RULE_UNKNOWN_FLOW, RULE_ADDRESSEE, RULE_SENDER, RULE_DENIED,
    RULE_NOT_ALLOWED, RULE_ROUTE, RULE_UNROUTED, RULE_TEST_REJECTED, RULE_FILE_BYTES, RULE_FLOW_INSTANCES,
    RULE_EVENT_BYTES,
)

BROADCAST = "broadcast"  # the addressee segment of a broadcast file's routing keys: lower case, never an MPID
MASK = "***"  # what a masked item's value becomes
REDACTED_ATTRIBUTE = "dtcredacted"  # comma-separated data paths removed or masked in a minimised copy
ROUTE_ATTRIBUTE = "dtcroute"  # the subscriber route a minimised copy was made for
_EMPTY: Mapping[str, Any] = MappingProxyType({})


# -- rules --------------------------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class ParticipantList:
    """Allow and deny lists of MPIDs. An empty allow list admits anyone not denied; deny always wins."""

    allow: frozenset[str] = frozenset()
    deny: frozenset[str] = frozenset()


@dataclass(frozen=True, slots=True)
class DirectionRules:
    """The participant lists of one direction: for every flow, and per flow selector (D0010 or D0010002)."""

    everyone: ParticipantList = ParticipantList()
    flows: Mapping[str, ParticipantList] = field(default_factory=lambda: _EMPTY)

    def lists_for(self, reference: str) -> tuple[ParticipantList, ...]:
        """Every list that applies to a flow reference: the general one, the flow's, the flow version's."""
        found = [self.everyone]
        for selector in (reference[:5], reference):
            entry = self.flows.get(selector)
            if entry is not None:
                found.append(entry)
        return tuple(found)


@dataclass(frozen=True, slots=True)
class TestDataRules:
    """Where non-production (ZHV Test Data Flag other than OPER) traffic goes: never where production goes."""

    production_flag: str = "OPER"
    action: Literal["route", "reject"] = "route"
    routing_key_prefix: str = "test"  # always non-empty: test keys never match a production binding
    exchange: str | None = None  # publish test traffic to this exchange instead of the production one


@dataclass(frozen=True, slots=True)
class BroadcastRules:
    """Which inbound files are broadcast: published once under the addressee `broadcast` instead of the recipient's
    MPID, for every entitled participant to bind (docs/security.md). A file is broadcast when its flow is listed or
    its ZHV broadcast flag (J1062) is one of `flag_values`."""

    flows: frozenset[str] = frozenset()  # selectors: D0010 or D0010002
    flag_values: frozenset[str] = frozenset({"Y"})

    def applies(self, reference: str, flag: str) -> bool:
        return (bool(flag) and flag in self.flag_values) or reference in self.flows or reference[:5] in self.flows


@dataclass(frozen=True, slots=True)
class LimitRules:
    """Size limits; None means no limit."""

    max_file_bytes: int | None = None
    max_flow_instances: int | None = None
    max_event_bytes: int | None = None


@dataclass(frozen=True, slots=True)
class Redaction:
    """One data path to remove or mask, compiled against one flow definition."""

    path: str  # as configured, relative to `data`, e.g. mpan_cores.meter_reading_types.meter_id
    segments: tuple[str, ...]
    action: Literal["remove", "mask"]


@dataclass(frozen=True, slots=True)
class SubscriberRoute:
    """A minimised copy for one subscriber: which flows, under which routing-key prefix, without which items."""

    name: str
    routing_key_prefix: str
    flows: frozenset[str] | None  # selectors (D0010, D0010002); None = every flow
    redactions: Mapping[str, tuple[Redaction, ...]]  # by flow reference, only paths that exist in that flow

    def applies_to(self, reference: str) -> bool:
        return self.flows is None or reference in self.flows or reference[:5] in self.flows


@dataclass(frozen=True, slots=True)
class RuleSet:
    """Every governance rule, compiled and checked against the flow definitions; built by `parse_rules`."""

    participant_id: str
    participant_role: str
    routes: Mapping[str, frozenset[tuple[str, str]]]  # by flow reference: allowed (from role, to role)
    enforce_routes: bool = True
    unrouted: Literal["accept", "reject"] = "accept"
    addressee_enforce: bool = True
    addressee_check_role: bool = False
    sender_enforce: bool = False
    sender_check_role: bool = False
    inbound: DirectionRules = DirectionRules()
    outbound: DirectionRules = DirectionRules()
    test_data: TestDataRules = TestDataRules()
    limits: LimitRules = LimitRules()
    broadcast: BroadcastRules = BroadcastRules()
    subscribers: tuple[SubscriberRoute, ...] = ()
    definitions: DefinitionSet | None = field(default=None, compare=False, repr=False)

    def direction(self, direction: Direction) -> DirectionRules:
        return self.inbound if direction == "inbound" else self.outbound

    def redacts(self, reference: str) -> bool:
        """Whether some subscriber's copy of this flow's inbound events has items removed or masked."""
        return any(route.applies_to(reference) and route.redactions.get(reference) for route in self.subscribers)

    def addressee_key(self, facts: FileFacts) -> str:
        """The last segment of an inbound file's routing keys (its events' and its manifest's): `broadcast` for a
        broadcast file, the recipient's MPID otherwise. Only the key changes, never the event."""
        return BROADCAST if self.broadcast.applies(facts.flow_reference, facts.broadcast) else facts.to_participant

    def placement(self, routing_key: str, test: bool) -> tuple[str | None, str]:
        """(exchange or None for the usual one, routing key) of a message: test traffic gets the test prefix and
        exchange. For messages the stage does not build itself, e.g. a test file's manifest."""
        if not test:
            return None, routing_key
        return self.test_data.exchange, f"{self.test_data.routing_key_prefix}.{routing_key}"


# -- facts and decisions ------------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class FileFacts:
    """What the whole-file rules look at: the envelope, the size in bytes and the number of flow instances."""

    flow_reference: str
    from_role: str
    from_participant: str
    to_role: str
    to_participant: str
    test_data_flag: str = ""
    layout: str = "ZHV"  # ZHV, ZHD-POOL, ZHD-ZHV: pool files carry no test flag and are production
    size: int | None = None
    flow_count: int | None = None
    broadcast: str = ""  # the ZHV broadcast flag (J1062), empty when not set

    @classmethod
    def from_header(cls, header: FileHeader, *, size: int | None = None, flow_count: int | None = None) -> FileFacts:
        """The facts of a file whose header the reader has read."""
        return cls(header.flow_reference, header.from_role, header.from_participant, header.to_role,
                   header.to_participant, header.test_data_flag, header.layout, size, flow_count, header.broadcast)


@dataclass(frozen=True, slots=True)
class Output:
    """One message to publish (inbound) or write (outbound). `exchange` None means the pipeline's usual one."""

    routing_key: str
    event: dict[str, Any]  # shares unchanged parts with the input event: do not mutate
    exchange: str | None = None
    test: bool = False
    route: str | None = None  # the subscriber route of a minimised copy; None for the full event


@dataclass(frozen=True, slots=True)
class Decision:
    """One decision, safe to count and log: rule id, outcome, flow, counterparty, and a reason without data values
    (it names flows, roles, MPIDs, sizes and paths, never an MPAN, an address or a reading)."""

    rule: str
    outcome: Outcome
    direction: Direction
    flow: str | None  # flow reference, e.g. D0010002; None when the event names no known flow
    participant: str | None  # the counterparty: the sender inbound, the recipient outbound
    reason: str
    test: bool = False  # non-production (test data flag other than the production flag)

    @property
    def accepted(self) -> bool:
        return self.outcome != "reject"


@dataclass(frozen=True, slots=True)
class FileDecision(Decision):
    """The decision on a whole inbound file: rejected files go to quarantine before anything is published."""


@dataclass(frozen=True, slots=True)
class EventDecision(Decision):
    """The decision on one event, with what to publish or write when accepted (nothing when rejected)."""

    outputs: tuple[Output, ...] = ()
