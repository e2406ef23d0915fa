"""Governance rules: the stage between building (or receiving) an event and publishing (or writing) it.

Declarative rules from the `rules:` section of the configuration (docs/governance.md): the flow routing matrix,
participant allow/deny lists, the addressee, test-data routing, data minimisation per subscriber route and size
limits. The stage is pure (no I/O, no clock): `decide_inbound_file` judges a whole file before anything of it is
published, `route_event` judges one event and says where it goes. Every decision carries a stable rule id, the flow
and the counterparty, so that the caller can count and log it without personal data.

    rules = parse_rules(raw, participant_id="MRCY", participant_role="X", definitions=definitions)
    decision = route_event(event, "inbound", rules)
    if decision.accepted:
        for output in decision.outputs:
            publish(output.exchange, output.routing_key, output.event)
"""

from __future__ import annotations

from bridge.rules.decide import EventRouter, decide_inbound_file, minimise, route_event
from bridge.rules.model import (
    MASK,
    REDACTED_ATTRIBUTE,
    ROUTE_ATTRIBUTE,
    RULE_ACCEPTED,
    RULE_ADDRESSEE,
    RULE_DENIED,
    RULE_EVENT_BYTES,
    RULE_FILE_BYTES,
    RULE_FLOW_INSTANCES,
    RULE_MALFORMED,
    RULE_NOT_ALLOWED,
    RULE_ROUTE,
    RULE_SENDER,
    RULE_TEST_REJECTED,
    RULE_TEST_ROUTED,
    RULE_UNKNOWN_FLOW,
    RULE_UNROUTED,
    RULES,
    Decision,
    Direction,
    DirectionRules,
    EventDecision,
    FileDecision,
    FileFacts,
    LimitRules,
    Outcome,
    Output,
    ParticipantList,
    Redaction,
    RuleSet,
    SubscriberRoute,
    TestDataRules,
)
from bridge.rules.parse import RulesDocument, parse_rules

__all__ = [
    "MASK",
    "REDACTED_ATTRIBUTE",
    "ROUTE_ATTRIBUTE",
    "RULES",
    "RULE_ACCEPTED",
    "RULE_ADDRESSEE",
    "RULE_DENIED",
    "RULE_EVENT_BYTES",
    "RULE_FILE_BYTES",
    "RULE_FLOW_INSTANCES",
    "RULE_MALFORMED",
    "RULE_NOT_ALLOWED",
    "RULE_ROUTE",
    "RULE_SENDER",
    "RULE_TEST_REJECTED",
    "RULE_TEST_ROUTED",
    "RULE_UNKNOWN_FLOW",
    "RULE_UNROUTED",
    "Decision",
    "Direction",
    "DirectionRules",
    "EventDecision",
    "EventRouter",
    "FileDecision",
    "FileFacts",
    "LimitRules",
    "Outcome",
    "Output",
    "ParticipantList",
    "Redaction",
    "RuleSet",
    "RulesDocument",
    "SubscriberRoute",
    "TestDataRules",
    "decide_inbound_file",
    "minimise",
    "parse_rules",
    "route_event",
]
