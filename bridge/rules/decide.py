"""The governance stage itself: pure functions of (file facts or event, rules) -> decision. No I/O, no clock.

The checks run in a fixed order (docs/governance.md) and the first that fails names the rule; every check that can
let data through to production (addressee, participants, routes, test data) runs on every event too, not only on
its file, so the stage is safe wherever it is called from.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import orjson

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
    Direction,
    EventDecision,
    FileDecision,
    FileFacts,
    Outcome,
    Output,
    Redaction,
    RuleSet,
    SubscriberRoute,
)

_FLOW_TYPE_PREFIX = "uk.dtc."
_SIGNATURE = "signature"


def decide_inbound_file(facts: FileFacts, rules: RuleSet) -> FileDecision:
    """Judge a whole inbound file before anything of it is published: limits, addressee, participants, routes,
    test data. A rejected file goes to quarantine with `decision.rule`."""
    verdict = _judge(facts, "inbound", rules)
    return FileDecision(verdict.rule, verdict.outcome, "inbound", facts.flow_reference, facts.from_participant,
                        verdict.reason, verdict.test)


def route_event(event: Mapping[str, Any], direction: Direction, rules: RuleSet) -> EventDecision:
    """Judge one flow event and say where it goes: the production (or test) routing key, plus one minimised copy
    per subscriber route for inbound events. Any JSON object gets a decision (only a bad `direction` raises
    ValueError); `event` is not modified."""
    return EventRouter(direction, rules)(event)


class EventRouter:
    """`route_event` for a stream of events, most of which share an envelope (a file's events do): the rules'
    verdict depends on the envelope only, so it is reached once per envelope seen; the size limit and the outputs
    are still judged and made for each event."""

    _MAX_ENVELOPES = 256

    def __init__(self, direction: Direction, rules: RuleSet) -> None:
        if direction not in ("inbound", "outbound"):
            raise ValueError(f"direction must be 'inbound' or 'outbound', not {direction!r}")
        self.direction: Direction = direction
        self.rules = rules
        self._verdicts: dict[tuple[object, ...], tuple[FileFacts | str, _Verdict | None]] = {}

    def __call__(self, event: Mapping[str, Any]) -> EventDecision:
        direction, rules = self.direction, self.rules
        facts, verdict = self._verdict(event)
        if isinstance(facts, str):
            return EventDecision(RULE_MALFORMED, "reject", direction, None, None, facts)
        assert verdict is not None
        counterparty = facts.from_participant if direction == "inbound" else facts.to_participant
        if verdict.outcome == "reject":
            return EventDecision(verdict.rule, "reject", direction, facts.flow_reference, counterparty,
                                 verdict.reason, verdict.test)
        if rules.limits.max_event_bytes is not None:
            try:
                size = len(orjson.dumps(event))
            except TypeError:
                return EventDecision(RULE_MALFORMED, "reject", direction, facts.flow_reference, counterparty,
                                     "the event is not serialisable as JSON", verdict.test)
            if size > rules.limits.max_event_bytes:
                return EventDecision(RULE_EVENT_BYTES, "reject", direction, facts.flow_reference, counterparty,
                                     f"the event is {size} bytes of JSON, more than rules.limits.max_event_bytes "
                                     f"({rules.limits.max_event_bytes})", verdict.test)
        outputs = _outputs(event, facts, direction, verdict.test, rules)
        return EventDecision(verdict.rule, verdict.outcome, direction, facts.flow_reference, counterparty,
                             verdict.reason, verdict.test, outputs)

    def _verdict(self, event: Mapping[str, Any]) -> tuple[FileFacts | str, _Verdict | None]:
        """The event's facts (or why it has none) and the rules' verdict on them, from the envelope's cache."""
        envelope: tuple[object, ...] | None = (
            tuple(event.get(name, _ABSENT) for name in _ENVELOPE) if isinstance(event, Mapping) else None)
        # Kept only by values of exactly str, int or None (or absent, which is not null): 1 == True == 1.0 would
        # share a verdict otherwise.
        if envelope is not None and not all(type(value) in _PLAIN for value in envelope):
            envelope = None
        cached = self._verdicts.get(envelope) if envelope is not None else None
        if cached is not None:
            return cached
        facts = _event_facts(event)
        judged = (facts, None if isinstance(facts, str) else _judge(facts, self.direction, self.rules))
        if envelope is not None:
            if len(self._verdicts) >= self._MAX_ENVELOPES:
                self._verdicts.clear()
            self._verdicts[envelope] = judged
        return judged


# -- the checks ----------------------------------------------------------------------------------------------------


class _Verdict:
    __slots__ = ("outcome", "reason", "rule", "test")

    def __init__(self, rule: str, outcome: Outcome, reason: str, test: bool) -> None:
        self.rule = rule
        self.outcome: Outcome = outcome
        self.reason = reason
        self.test = test


def _is_test(facts: FileFacts, rules: RuleSet) -> bool:
    """Production only with the production flag, or with no flag in a pool layout (ZHD files have no flag field);
    a ZHV file without a flag cannot prove it is production, so it is test."""
    if not facts.test_data_flag:
        return not facts.layout.startswith("ZHD")
    return facts.test_data_flag != rules.test_data.production_flag


def _judge(facts: FileFacts, direction: Direction, rules: RuleSet) -> _Verdict:
    test = _is_test(facts, rules)

    def reject(rule: str, reason: str) -> _Verdict:
        return _Verdict(rule, "reject", reason, test)

    reference = facts.flow_reference
    if rules.definitions is not None and reference not in rules.definitions:
        return reject(RULE_UNKNOWN_FLOW, f"{reference} is not a known flow definition")
    limits = rules.limits
    if limits.max_file_bytes is not None and facts.size is not None and facts.size > limits.max_file_bytes:
        return reject(RULE_FILE_BYTES, f"the file is {facts.size} bytes, more than rules.limits.max_file_bytes "
                                       f"({limits.max_file_bytes})")
    if (limits.max_flow_instances is not None and facts.flow_count is not None
            and facts.flow_count > limits.max_flow_instances):
        return reject(RULE_FLOW_INSTANCES, f"the file has {facts.flow_count} flow instances, more than "
                                           f"rules.limits.max_flow_instances ({limits.max_flow_instances})")
    own_id, own_role = rules.participant_id, rules.participant_role
    if direction == "inbound" and rules.addressee_enforce:
        if facts.to_participant != own_id:
            return reject(RULE_ADDRESSEE, f"{reference} is addressed to {facts.to_participant}, not to this "
                                          f"participant {own_id}")
        if rules.addressee_check_role and facts.to_role != own_role:
            return reject(RULE_ADDRESSEE, f"{reference} is addressed to role {facts.to_role}, not to this "
                                          f"participant's role {own_role}")
    if direction == "outbound" and rules.sender_enforce:
        if facts.from_participant != own_id:
            return reject(RULE_SENDER, f"{reference} is sent as {facts.from_participant}, not as this participant "
                                       f"{own_id}")
        if rules.sender_check_role and facts.from_role != own_role:
            return reject(RULE_SENDER, f"{reference} is sent as role {facts.from_role}, not as this participant's "
                                       f"role {own_role}")
    counterparty = facts.from_participant if direction == "inbound" else facts.to_participant
    what = "sender" if direction == "inbound" else "recipient"
    for lists in rules.direction(direction).lists_for(reference):
        for who, participant in (("sender", facts.from_participant), ("recipient", facts.to_participant)):
            if participant in lists.deny:
                return reject(RULE_DENIED, f"{who} {participant} is on the {direction} deny list for {reference}")
        if lists.allow and counterparty not in lists.allow:
            return reject(RULE_NOT_ALLOWED, f"{what} {counterparty} is not on the {direction} allow list for "
                                            f"{reference}")
    warning: _Verdict | None = None
    if rules.enforce_routes:
        allowed = rules.routes.get(reference, frozenset())
        if not allowed:
            if rules.unrouted == "reject":
                return reject(RULE_UNROUTED, f"{reference} has no routes in its flow definition and "
                                             "rules.routing.unrouted is reject")
            warning = _Verdict(RULE_UNROUTED, "warn", f"{reference} has no routes in its flow definition: "
                                                      "accepted unchecked", test)
        elif (facts.from_role, facts.to_role) not in allowed:
            shown = ", ".join(f"{a}->{b}" for a, b in sorted(allowed))
            return reject(RULE_ROUTE, f"{reference} may not go from role {facts.from_role} to role "
                                      f"{facts.to_role} (routes: {shown})")
    if test and rules.test_data.action == "reject":
        return reject(RULE_TEST_REJECTED, f"test data (flag {facts.test_data_flag or 'missing'}) is refused: "
                                          "rules.test_data.action is reject")
    if warning is not None:
        return warning
    if test:
        return _Verdict(RULE_TEST_ROUTED, "accept", f"test data (flag {facts.test_data_flag or 'missing'}) "
                                                    "routed apart from production", True)
    return _Verdict(RULE_ACCEPTED, "accept", "every rule passed", False)


class _Absent:
    """A member the event does not have: a verdict for `"dtctestflag": null` is not one for no test flag."""

    __slots__ = ()


_ENVELOPE = ("type", "dtcfrom", "dtcfromrole", "dtcto", "dtctorole", "dtctestflag", "dtcenvelope", "dtcflowcount",
             "dtcbroadcast")
_ABSENT = _Absent()
_PLAIN = frozenset({str, int, type(None), _Absent})


def _event_facts(event: Mapping[str, Any]) -> FileFacts | str:
    """The envelope facts of an event, or why it has none (a malformed event is rejected, never guessed). It reads
    the `_ENVELOPE` attributes only: `EventRouter` keeps its verdicts by them."""
    if not isinstance(event, Mapping):
        return "the event is not a JSON object"
    event_type = event.get("type")
    if not isinstance(event_type, str) or not event_type.startswith(_FLOW_TYPE_PREFIX):
        return "attribute 'type' does not name a flow (uk.dtc.<flow>.v<version>)"
    parts = event_type[len(_FLOW_TYPE_PREFIX):].split(".")
    if len(parts) != 2 or len(parts[0]) != 5 or len(parts[1]) != 4 or not parts[1].startswith("v"):
        return "attribute 'type' does not name a flow (uk.dtc.<flow>.v<version>)"
    values: dict[str, str] = {}
    for name in ("dtcfrom", "dtcfromrole", "dtcto", "dtctorole"):
        value = event.get(name)
        if not isinstance(value, str) or not value:
            return f"attribute {name!r} must be a non-empty string"
        values[name] = value
    for name in ("dtctestflag", "dtcenvelope"):
        value = event.get(name, "")
        if not isinstance(value, str):
            return f"attribute {name!r} must be a string"
        values[name] = value
    broadcast = event.get("dtcbroadcast", "")  # only ever picks a routing key: a non-string one is no broadcast
    values["dtcbroadcast"] = broadcast if isinstance(broadcast, str) else ""
    flow_count = event.get("dtcflowcount")
    if flow_count is not None and (isinstance(flow_count, bool) or not isinstance(flow_count, int)):
        return "attribute 'dtcflowcount' must be an integer"
    return FileFacts(parts[0] + parts[1][1:], values["dtcfromrole"], values["dtcfrom"], values["dtctorole"],
                     values["dtcto"], values["dtctestflag"], values["dtcenvelope"].split("+")[0] or "ZHV",
                     None, flow_count, values["dtcbroadcast"])


# -- outputs -------------------------------------------------------------------------------------------------------


def _outputs(event: Mapping[str, Any], facts: FileFacts, direction: Direction, test: bool,
             rules: RuleSet) -> tuple[Output, ...]:
    addressee = rules.addressee_key(facts) if direction == "inbound" else facts.to_participant
    tail = f"{facts.flow_reference}.{facts.from_participant}.{addressee}"
    exchange, placed = rules.placement(f"{direction}.{tail}", test)
    full = event if isinstance(event, dict) else dict(event)
    outputs = [Output(placed, full, exchange, test)]
    if direction == "inbound":
        for route in rules.subscribers:
            if route.applies_to(facts.flow_reference):
                exchange, placed = rules.placement(f"{route.routing_key_prefix}.{tail}", test)
                outputs.append(Output(placed, minimise(event, route, facts.flow_reference), exchange, test,
                                      route.name))
    return tuple(outputs)


def minimise(event: Mapping[str, Any], route: SubscriberRoute, reference: str) -> dict[str, Any]:
    """A copy of `event` for a subscriber route: its paths removed or masked, `dtcredacted` listing those that
    apply to the event's level-1 group, `dtcroute` naming the route, and no signature (it no longer fits)."""
    copy = {name: value for name, value in event.items() if name != _SIGNATURE}
    data = event.get("data")
    applied: list[str] = []
    if isinstance(data, dict):
        for redaction in route.redactions.get(reference, ()):
            if redaction.segments[0] in data:
                data = _redact(data, redaction.segments, redaction)
                applied.append(redaction.path)
        copy["data"] = data
    copy[ROUTE_ATTRIBUTE] = route.name
    if applied:
        copy[REDACTED_ATTRIBUTE] = ",".join(applied)
    else:
        copy.pop(REDACTED_ATTRIBUTE, None)
    return copy


def _redact(node: Any, segments: tuple[str, ...], redaction: Redaction) -> Any:
    """Copy-on-write: only the containers on the path are copied; lists apply the rest of the path to each entry."""
    if isinstance(node, list):
        return [_redact(entry, segments, redaction) for entry in node]
    if isinstance(node, orjson.Fragment):  # JSON already written (file_events' as_fragments): cannot be redacted
        raise TypeError(f"cannot apply redaction {redaction.path} to data written as a JSON fragment")
    if not isinstance(node, dict) or segments[0] not in node:
        return node
    head, rest = segments[0], segments[1:]
    copy = dict(node)
    if rest:
        copy[head] = _redact(node[head], rest, redaction)
    elif redaction.action == "remove":
        del copy[head]
    else:
        copy[head] = MASK
    return copy
