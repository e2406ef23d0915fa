"""Broadcast files: one publish under `<direction>.<flow>.<from>.broadcast` (events, minimised copies, test keys), by
flow (rules.broadcast.flows) or by the ZHV broadcast flag (rules.broadcast.flag_values); the event is unchanged."""

from __future__ import annotations

from typing import Any

import pytest
from rules_helpers import DEFINITIONS, OWN_ID, OWN_ROLE, event

from bridge.errors import ConfigError
from bridge.rules import EventRouter, FileFacts, RuleSet, parse_rules, route_event

READINGS = {"name": "readings", "routing_key_prefix": "minimised.readings", "flows": ["D0010"],
            "mask": ["mpan_cores.meter_reading_types.meter_id"]}


def rules(raw: Any = None) -> RuleSet:
    return parse_rules(raw, participant_id=OWN_ID, participant_role=OWN_ROLE, definitions=DEFINITIONS,
                       source="bridge.yaml")


def keys(raw: Any, built: dict[str, Any], direction: str = "inbound") -> list[str]:
    decision = route_event(built, direction, rules(raw))  # type: ignore[arg-type]
    assert decision.accepted, decision
    return [output.routing_key for output in decision.outputs]


def test_not_broadcast_by_default() -> None:
    assert keys(None, event()) == ["inbound.D0010002.UDMS.MRCY"]
    assert keys(None, event(dtcbroadcast="N")) == ["inbound.D0010002.UDMS.MRCY"]


@pytest.mark.parametrize("selector", ["D0010", "D0010002"])
def test_a_listed_flow_is_broadcast_with_its_copies(selector: str) -> None:
    raw = {"broadcast": {"flows": [selector]}, "subscribers": [READINGS]}
    built = event()
    decision = route_event(built, "inbound", rules(raw))
    assert [output.routing_key for output in decision.outputs] == [
        "inbound.D0010002.UDMS.broadcast", "minimised.readings.D0010002.UDMS.broadcast"]
    assert decision.outputs[0].event is built  # only the key changes, never the event
    assert keys(raw, event("D0086", "002")) == ["inbound.D0086002.UDMS.MRCY"]


def test_the_zhv_flag_makes_a_file_broadcast() -> None:
    assert keys(None, event(dtcbroadcast="Y")) == ["inbound.D0010002.UDMS.broadcast"]
    assert keys({"broadcast": {"flag_values": []}}, event(dtcbroadcast="Y")) == ["inbound.D0010002.UDMS.MRCY"]
    assert keys({"broadcast": {"flag_values": ["B"]}}, event(dtcbroadcast="B")) == [
        "inbound.D0010002.UDMS.broadcast"]
    assert keys(None, event(dtcbroadcast=None)) == ["inbound.D0010002.UDMS.MRCY"]  # never a reason to reject


def test_test_traffic_keeps_its_prefix() -> None:
    assert keys({"broadcast": {"flows": ["D0010"]}}, event(flag="TR01")) == [
        "test.inbound.D0010002.UDMS.broadcast"]


def test_outbound_keys_keep_the_recipient() -> None:
    raw = {"broadcast": {"flows": ["D0010"]}}
    assert keys(raw, event(sender=OWN_ID, recipient="UDMS", recipient_role="D", sender_role=OWN_ROLE,
                           dtcbroadcast="Y"), "outbound") == ["outbound.D0010002.MRCY.UDMS"]


def test_the_verdict_cache_tells_broadcast_apart() -> None:
    """EventRouter keeps verdicts by envelope: the broadcast flag is part of it."""
    router = EventRouter("inbound", rules())
    assert router(event()).outputs[0].routing_key.endswith(".MRCY")
    assert router(event(dtcbroadcast="Y")).outputs[0].routing_key.endswith(".broadcast")


def test_addressee_key_of_a_file() -> None:
    facts = FileFacts("D0269004", "Z", "POOL", OWN_ROLE, OWN_ID, "OPER")
    assert rules().addressee_key(facts) == OWN_ID
    assert rules({"broadcast": {"flows": ["D0269"]}}).addressee_key(facts) == "broadcast"


@pytest.mark.parametrize(("raw", "key", "words"), [
    ({"broadcast": {"flows": ["D9999"]}}, "rules.broadcast.flows[0]", "names no loaded flow definition"),
    ({"broadcast": {"flows": "D0010"}}, "rules.broadcast.flows", "expected a list"),
    ({"broadcast": {"flag_values": ["YES"]}}, "rules.broadcast.flag_values[0]", "not a ZHV broadcast flag"),
    ({"broadcast": {"flag_values": ["|"]}}, "rules.broadcast.flag_values[0]", "not a ZHV broadcast flag"),
    ({"broadcast": {"flows": [], "colour": 1}}, "rules.broadcast.colour", "unknown key"),
])
def test_errors_name_the_key(raw: Any, key: str, words: str) -> None:
    with pytest.raises(ConfigError) as caught:
        rules(raw)
    assert caught.value.key == key and words in caught.value.message, caught.value
