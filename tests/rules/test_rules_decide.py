"""The governance stage: every rule on files and events, the order of the checks, the outputs and minimisation."""

from __future__ import annotations

import copy
from typing import Any

import pytest
from rules_helpers import DEFINITIONS, OWN_ID, OWN_ROLE, event, without_routes

from bridge.dtn.definitions import DefinitionSet
from bridge.dtn.model import FileHeader
from bridge.rules import (
    MASK,
    RULES,
    EventDecision,
    FileDecision,
    FileFacts,
    RuleSet,
    decide_inbound_file,
    parse_rules,
    route_event,
)


def rules(raw: Any = None, definitions: DefinitionSet = DEFINITIONS) -> RuleSet:
    return parse_rules(raw, participant_id=OWN_ID, participant_role=OWN_ROLE, definitions=definitions)


def facts(**changes: Any) -> FileFacts:
    values: dict[str, Any] = {"flow_reference": "D0010002", "from_role": "D", "from_participant": "UDMS",
                              "to_role": OWN_ROLE, "to_participant": OWN_ID, "test_data_flag": "OPER",
                              "layout": "ZHV", "size": 1000, "flow_count": 11}
    values.update(changes)
    return FileFacts(**values)


READINGS = {"name": "readings", "routing_key_prefix": "minimised.readings", "flows": ["D0010"],
            "remove": ["mpan_cores.site_visits", "mpan_cores.meter_reading_types.register_readings"],
            "mask": ["mpan_cores.meter_reading_types.meter_id"]}


class TestFile:
    def test_accepted(self) -> None:
        decision = decide_inbound_file(facts(), rules())
        assert isinstance(decision, FileDecision)
        assert (decision.rule, decision.outcome, decision.accepted) == ("accepted", "accept", True)
        assert (decision.direction, decision.flow, decision.participant, decision.test) == (
            "inbound", "D0010002", "UDMS", False)

    def test_from_header(self) -> None:
        header = FileHeader("ZHV", "1", "D0010002", "D", "UDMS", "X", "MRCY", "20160302153151",
                            test_data_flag="TR01")
        found = FileFacts.from_header(header, size=10, flow_count=2)
        assert found == facts(test_data_flag="TR01", size=10, flow_count=2)
        assert decide_inbound_file(found, rules()).rule == "test_data.routed"

    @pytest.mark.parametrize(("raw", "changes", "rule"), [
        (None, {"to_participant": "OTHR"}, "addressee"),
        ({"addressee": {"check_role": True}}, {"to_role": "M"}, "addressee"),
        ({"participants": {"inbound": {"deny": ["UDMS"]}}}, {}, "participant.denied"),
        ({"participants": {"inbound": {"flows": {"D0010": {"deny": ["UDMS"]}}}}}, {}, "participant.denied"),
        ({"participants": {"inbound": {"flows": {"D0010002": {"deny": ["UDMS"]}}}}}, {}, "participant.denied"),
        ({"participants": {"inbound": {"allow": ["LBSL"]}}}, {}, "participant.not_allowed"),
        ({"participants": {"inbound": {"flows": {"D0010": {"allow": ["LBSL"]}}}}}, {}, "participant.not_allowed"),
        (None, {"from_role": "Z"}, "route.forbidden"),
        (None, {"to_role": "Z"}, "route.forbidden"),
        ({"limits": {"max_file_bytes": 999}}, {}, "limit.file_bytes"),
        ({"limits": {"max_flow_instances": 10}}, {}, "limit.flow_instances"),
        ({"test_data": {"action": "reject"}}, {"test_data_flag": "TR01"}, "test_data.rejected"),
        (None, {"flow_reference": "D9999001"}, "flow.unknown"),
    ])
    def test_rejected(self, raw: Any, changes: dict[str, Any], rule: str) -> None:
        """Each whole-file rule rejects with its id and a reason; the flow and sender are named for metrics."""
        decision = decide_inbound_file(facts(**changes), rules(raw))
        assert (decision.rule, decision.outcome, decision.accepted) == (rule, "reject", False)
        assert decision.reason and decision.participant == changes.get("from_participant", "UDMS")

    @pytest.mark.parametrize(("raw", "changes"), [
        ({"addressee": {"enforce": False}}, {"to_participant": "OTHR"}),
        (None, {"to_role": "M", "from_role": "M"}),  # addressee role not checked by default; M->M is a route
        ({"participants": {"inbound": {"allow": ["UDMS"], "flows": {"D0086": {"deny": ["UDMS"]}}}}}, {}),
        ({"participants": {"outbound": {"deny": ["UDMS"]}}}, {}),  # the other direction's lists
        ({"routing": {"enforce": False}}, {"from_role": "Z"}),
        ({"routing": {"add": {"D0010": [{"from": "Z", "to": "X"}]}}}, {"from_role": "Z"}),
        ({"limits": {"max_file_bytes": 1000, "max_flow_instances": 11}}, {}),
        ({"limits": {"max_file_bytes": 1}}, {"size": None, "flow_count": None}),
    ])
    def test_not_rejected(self, raw: Any, changes: dict[str, Any]) -> None:
        assert decide_inbound_file(facts(**changes), rules(raw)).accepted

    def test_order(self) -> None:
        """The first failing check names the rule: limits, addressee, participants, routes, test data."""
        everything = {"limits": {"max_file_bytes": 1}, "participants": {"inbound": {"deny": ["UDMS"]}},
                      "test_data": {"action": "reject"}}
        bad = {"to_participant": "OTHR", "from_role": "Z", "test_data_flag": "TR01"}
        assert decide_inbound_file(facts(**bad), rules(everything)).rule == "limit.file_bytes"
        del everything["limits"]
        assert decide_inbound_file(facts(**bad), rules(everything)).rule == "addressee"
        bad.pop("to_participant")
        assert decide_inbound_file(facts(**bad), rules(everything)).rule == "participant.denied"
        del everything["participants"]
        assert decide_inbound_file(facts(**bad), rules(everything)).rule == "route.forbidden"
        bad.pop("from_role")
        assert decide_inbound_file(facts(**bad), rules(everything)).rule == "test_data.rejected"

    def test_reasons_hold_no_data(self) -> None:
        """Reasons name flows, roles, MPIDs and sizes only."""
        decision = decide_inbound_file(facts(to_participant="OTHR"), rules())
        assert decision.reason == "D0010002 is addressed to OTHR, not to this participant MRCY"
        decision = decide_inbound_file(facts(from_role="Z"), rules())
        assert decision.reason.startswith("D0010002 may not go from role Z to role X (routes: C->C, C->R, ")


class TestUnrouted:
    def test_warn_by_default(self) -> None:
        """A flow whose definition has no routes is accepted with a warning decision."""
        decision = decide_inbound_file(facts(), rules(None, without_routes("D0010002")))
        assert (decision.rule, decision.outcome, decision.accepted) == ("route.unrouted", "warn", True)
        routed = route_event(event(), "inbound", rules(None, without_routes("D0010002")))
        assert routed.outcome == "warn" and routed.outputs[0].routing_key == "inbound.D0010002.UDMS.MRCY"

    def test_reject_when_strict(self) -> None:
        decision = decide_inbound_file(facts(), rules({"routing": {"unrouted": "reject"}},
                                                      without_routes("D0010002")))
        assert (decision.rule, decision.outcome) == ("route.unrouted", "reject")

    def test_added_routes_count(self) -> None:
        """Routes added in the config make an unrouted flow routed."""
        raw = {"routing": {"unrouted": "reject", "add": {"D0010": [{"from": "D", "to": "X"}]}}}
        assert decide_inbound_file(facts(), rules(raw, without_routes("D0010002"))).rule == "accepted"

    def test_test_data_still_test(self) -> None:
        """A warned test event is still routed as test."""
        decision = route_event(event(flag="TR01"), "inbound", rules(None, without_routes("D0010002")))
        assert decision.outcome == "warn" and decision.test
        assert decision.outputs[0].routing_key == "test.inbound.D0010002.UDMS.MRCY"


class TestTestData:
    @pytest.mark.parametrize(("flag", "envelope", "test"), [
        ("OPER", "ZHV", False), ("TR01", "ZHV", True), ("TR03", "ZHV", True), ("", "ZHV", True),
        (None, "ZHV", True), (None, None, True), ("oper", "ZHV", True),
        (None, "ZHD-POOL", False), (None, "ZHD-POOL+pipe", False), ("TR01", "ZHD-ZHV", True),
        ("OPER", "ZHD-ZHV", False),
    ])
    def test_flag(self, flag: str | None, envelope: str | None, test: bool) -> None:
        """Production only with OPER, or a pool file (no flag field); a ZHV file without a flag is test."""
        decision = route_event(event(flag=flag, envelope=envelope), "inbound", rules())
        assert decision.accepted and decision.test is test
        assert decision.rule == ("test_data.routed" if test else "accepted")
        expected = ("test." if test else "") + "inbound.D0010002.UDMS.MRCY"
        assert [output.routing_key for output in decision.outputs] == [expected]
        assert all(output.test is test for output in decision.outputs)

    def test_exchange_and_prefix(self) -> None:
        raw = {"test_data": {"routing_key_prefix": "sandbox.dtn", "exchange": "dtn.test"}}
        (output,) = route_event(event(flag="TR01"), "inbound", rules(raw)).outputs
        assert (output.exchange, output.routing_key) == ("dtn.test", "sandbox.dtn.inbound.D0010002.UDMS.MRCY")
        (output,) = route_event(event(), "inbound", rules(raw)).outputs
        assert (output.exchange, output.routing_key) == (None, "inbound.D0010002.UDMS.MRCY")

    def test_custom_production_flag(self) -> None:
        raw = {"test_data": {"production_flag": "PROD"}}
        assert route_event(event(flag="OPER"), "inbound", rules(raw)).test
        assert not route_event(event(flag="PROD"), "inbound", rules(raw)).test

    def test_placement(self) -> None:
        """For messages the stage does not build (a test file's manifest)."""
        ruleset = rules({"test_data": {"exchange": "dtn.test"}})
        assert ruleset.placement("file.received.D0010002.UDMS.MRCY", True) == (
            "dtn.test", "test.file.received.D0010002.UDMS.MRCY")
        assert ruleset.placement("file.received.D0010002.UDMS.MRCY", False) == (
            None, "file.received.D0010002.UDMS.MRCY")


class TestEvents:
    def test_accepted_inbound(self) -> None:
        original = event()
        decision = route_event(original, "inbound", rules())
        assert isinstance(decision, EventDecision)
        assert (decision.rule, decision.flow, decision.participant) == ("accepted", "D0010002", "UDMS")
        (output,) = decision.outputs
        assert output.routing_key == "inbound.D0010002.UDMS.MRCY" and output.exchange is None
        assert output.event is original and output.route is None

    def test_accepted_outbound(self) -> None:
        """Outbound: the key events are consumed under; the counterparty is the recipient; no addressee check."""
        outgoing = event(sender=OWN_ID, sender_role="X", recipient="UDMS", recipient_role="D")
        decision = route_event(outgoing, "outbound", rules({"subscribers": [READINGS]}))
        assert (decision.rule, decision.direction, decision.participant) == ("accepted", "outbound", "UDMS")
        assert [output.routing_key for output in decision.outputs] == ["outbound.D0010002.MRCY.UDMS"]

    @pytest.mark.parametrize(("raw", "kwargs", "direction", "rule"), [
        (None, {"recipient": "OTHR"}, "inbound", "addressee"),
        ({"addressee": {"check_role": True}}, {"recipient_role": "M", "sender_role": "M"}, "inbound", "addressee"),
        ({"sender": {"enforce": True}}, {}, "outbound", "sender"),
        ({"sender": {"enforce": True, "check_role": True}},
         {"sender": OWN_ID, "sender_role": "C", "recipient_role": "X"}, "outbound", "sender"),
        ({"participants": {"inbound": {"deny": ["UDMS"]}}}, {}, "inbound", "participant.denied"),
        ({"participants": {"outbound": {"deny": ["UDMS"]}}}, {}, "outbound", "participant.denied"),
        ({"participants": {"outbound": {"deny": ["MRCY"]}}}, {}, "outbound", "participant.denied"),
        ({"participants": {"outbound": {"allow": ["UDMS"]}}}, {}, "outbound", "participant.not_allowed"),
        (None, {"sender_role": "Z"}, "outbound", "route.forbidden"),
        ({"limits": {"max_flow_instances": 10}}, {}, "inbound", "limit.flow_instances"),
        ({"limits": {"max_event_bytes": 100}}, {}, "inbound", "limit.event_bytes"),
        ({"test_data": {"action": "reject"}}, {"flag": "TR01"}, "outbound", "test_data.rejected"),
        (None, {"flow": "D9999"}, "inbound", "flow.unknown"),
    ])
    def test_rejected(self, raw: Any, kwargs: dict[str, Any], direction: str, rule: str) -> None:
        """A rejected event has no outputs: the caller dead-letters (outbound) or quarantines (inbound) it."""
        decision = route_event(event(**kwargs), direction, rules(raw))  # type: ignore[arg-type]
        assert (decision.rule, decision.outcome, decision.outputs) == (rule, "reject", ())

    def test_event_bytes_boundary(self) -> None:
        import orjson

        size = len(orjson.dumps(event()))
        assert route_event(event(), "inbound", rules({"limits": {"max_event_bytes": size}})).accepted
        assert not route_event(event(), "inbound", rules({"limits": {"max_event_bytes": size - 1}})).accepted

    @pytest.mark.parametrize(("changes", "words"), [
        ({"type": None}, "'type'"),
        ({"type": "uk.dtc.file.received"}, "'type'"),
        ({"type": "uk.dtc.D0010.002"}, "'type'"),
        ({"type": 7}, "'type'"),
        ({"dtcfrom": None}, "'dtcfrom'"),
        ({"dtcto": ""}, "'dtcto'"),
        ({"dtctorole": 3}, "'dtctorole'"),
        ({"dtcfromrole": None}, "'dtcfromrole'"),
        ({"dtctestflag": 1}, "'dtctestflag'"),
        ({"dtcenvelope": ["ZHV"]}, "'dtcenvelope'"),
        ({"dtcflowcount": "11"}, "'dtcflowcount'"),
        ({"dtcflowcount": True}, "'dtcflowcount'"),
    ])
    def test_malformed(self, changes: dict[str, Any], words: str) -> None:
        """An event without a usable envelope is rejected, never guessed at."""
        broken = event()
        for name, value in changes.items():
            if value is None:
                del broken[name]
            else:
                broken[name] = value
        decision = route_event(broken, "inbound", rules())
        assert (decision.rule, decision.outcome, decision.outputs) == ("event.malformed", "reject", ())
        assert words in decision.reason

    def test_not_serialisable(self) -> None:
        decision = route_event(event(extra=object()), "inbound", rules({"limits": {"max_event_bytes": 10**6}}))
        assert decision.rule == "event.malformed"

    def test_bad_direction(self) -> None:
        with pytest.raises(ValueError, match="direction"):
            route_event(event(), "sideways", rules())  # type: ignore[arg-type]

    def test_rule_ids_are_listed(self) -> None:
        assert len(set(RULES)) == len(RULES) == 14


class TestMinimisation:
    def test_copy_per_route(self) -> None:
        original = event(signature="eyJhbGciOi..")
        before = copy.deepcopy(original)
        decision = route_event(original, "inbound", rules({"subscribers": [READINGS]}))
        full, minimised = decision.outputs
        assert full.event is original and full.route is None
        assert minimised.routing_key == "minimised.readings.D0010002.UDMS.MRCY" and minimised.route == "readings"
        copy_ = minimised.event
        assert copy_["dtcredacted"] == ("mpan_cores.site_visits,mpan_cores.meter_reading_types.register_readings,"
                                        "mpan_cores.meter_reading_types.meter_id")
        assert copy_["dtcroute"] == "readings" and "signature" not in copy_
        assert copy_["id"] == original["id"] and copy_["subject"] == original["subject"]
        cores = copy_["data"]["mpan_cores"]
        assert "site_visits" not in cores
        assert cores["meter_reading_types"] == [{"meter_id": MASK, "reading_type": "C"},
                                                {"meter_id": MASK, "reading_type": "C"}]
        assert original == before  # the input is never modified

    def test_absent_paths_listed_but_harmless(self) -> None:
        """Paths of the event's level-1 group are listed even where this instance has no value."""
        data = {"mpan_cores": {"mpan_core": "2200031930792", "bsc_validation_status": "V",
                               "meter_reading_types": {"meter_id": "X1", "reading_type": "C"}}}
        _, minimised = route_event(event(data=data), "inbound", rules({"subscribers": [READINGS]})).outputs
        assert minimised.event["data"]["mpan_cores"]["meter_reading_types"] == {"meter_id": MASK,
                                                                                 "reading_type": "C"}
        assert "mpan_cores.site_visits" in minimised.event["dtcredacted"]

    def test_route_flows(self) -> None:
        """A route only copies its flows; a route for every flow copies all, redacting nothing it lacks."""
        raw = {"subscribers": [READINGS, {"name": "audit", "routing_key_prefix": "audit",
                                          "remove": ["mpan_cores.address_line_1"]}]}
        d0086 = event("D0086", sender_role="D", data={"other": {"x": 1}})
        outputs = route_event(d0086, "inbound", rules(raw)).outputs
        assert [output.routing_key for output in outputs] == ["inbound.D0086002.UDMS.MRCY",
                                                              "audit.D0086002.UDMS.MRCY"]
        assert "dtcredacted" not in outputs[1].event and outputs[1].event["dtcroute"] == "audit"

    def test_test_copies_stay_test(self) -> None:
        raw = {"subscribers": [READINGS], "test_data": {"exchange": "dtn.test"}}
        outputs = route_event(event(flag="TR01"), "inbound", rules(raw)).outputs
        assert [(o.exchange, o.routing_key) for o in outputs] == [
            ("dtn.test", "test.inbound.D0010002.UDMS.MRCY"), ("dtn.test", "test.minimised.readings.D0010002.UDMS.MRCY")]

    def test_stale_redacted_attribute_dropped(self) -> None:
        raw = {"subscribers": [{"name": "all", "routing_key_prefix": "copy", "flows": ["D0086"],
                                "remove": ["mpan_cores.mpan_core"]}]}
        d0086 = event("D0086", data={"other": {}}, dtcredacted="x")
        assert "dtcredacted" not in route_event(d0086, "inbound", rules(raw)).outputs[1].event

    def test_outbound_not_minimised(self) -> None:
        """Outbound events become DTN files: minimising would break them."""
        outputs = route_event(event(), "outbound", rules({"subscribers": [READINGS]})).outputs
        assert len(outputs) == 1 and outputs[0].event["data"]["mpan_cores"]["site_visits"]
