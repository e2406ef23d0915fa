"""`rules:` -> RuleSet: the defaults, every section, and an error naming the dotted key for every mistake."""

from __future__ import annotations

from typing import Any

import pytest
from rules_helpers import DEFINITIONS, OWN_ID, OWN_ROLE

from bridge.errors import ConfigError
from bridge.rules import ParticipantList, RuleSet, parse_rules


def parse(raw: Any) -> RuleSet:
    return parse_rules(raw, participant_id=OWN_ID, participant_role=OWN_ROLE, definitions=DEFINITIONS,
                       source="bridge.yaml")


def error(raw: Any) -> ConfigError:
    with pytest.raises(ConfigError) as caught:
        parse(raw)
    return caught.value


class TestDefaults:
    @pytest.mark.parametrize("raw", [None, {}])
    def test_no_rules(self, raw: Any) -> None:
        """Without a `rules:` section: routes and addressee enforced, nothing else restricted, test data routed
        under `test.`."""
        rules = parse(raw)
        assert rules.participant_id == OWN_ID and rules.participant_role == OWN_ROLE
        assert rules.enforce_routes and rules.unrouted == "accept"
        assert rules.addressee_enforce and not rules.addressee_check_role and not rules.sender_enforce
        assert rules.inbound.everyone == ParticipantList() and not rules.inbound.flows
        assert rules.test_data.production_flag == "OPER" and rules.test_data.routing_key_prefix == "test"
        assert rules.test_data.exchange is None and rules.test_data.action == "route"
        assert rules.limits.max_file_bytes is None and rules.limits.max_event_bytes is None
        assert rules.subscribers == ()

    def test_routes_from_definitions(self) -> None:
        """Every flow's routes come from its definition (D0010 included)."""
        rules = parse(None)
        assert set(rules.routes) == set(DEFINITIONS)
        for reference, definition in DEFINITIONS.items():
            assert rules.routes[reference] == frozenset(definition.routes)
        assert ("D", "X") in rules.routes["D0010002"]

    def test_frozen(self) -> None:
        rules = parse(None)
        with pytest.raises(AttributeError):
            rules.unrouted = "reject"  # type: ignore[misc]
        with pytest.raises(TypeError):
            rules.routes["D0010002"] = frozenset()  # type: ignore[index]


class TestSections:
    def test_full_example(self) -> None:
        """The example of docs/governance.md parses."""
        rules = parse({
            "routing": {"enforce": True, "unrouted": "reject", "add": {"D0036001": [{"from": "C", "to": "D"}]}},
            "addressee": {"enforce": True, "check_role": True},
            "sender": {"enforce": True, "check_role": False},
            "participants": {
                "inbound": {"deny": ["BADP"], "flows": {"D0010": {"allow": ["UDMS", "LBSL"]}}},
                "outbound": {"allow": ["UDMS"], "flows": {"D0155001": {"deny": ["OESL"]}}},
            },
            "test_data": {"production_flag": "OPER", "action": "route", "routing_key_prefix": "test.",
                          "exchange": "dtn.events.test"},
            "limits": {"max_file_bytes": 1000, "max_flow_instances": 10, "max_event_bytes": 500},
            "subscribers": [{"name": "readings", "routing_key_prefix": "minimised.readings",
                             "flows": ["D0010002"], "remove": ["mpan_cores.site_visits"],
                             "mask": ["data.mpan_cores.meter_reading_types.meter_id"]}],
        })
        assert rules.unrouted == "reject" and rules.addressee_check_role and rules.sender_enforce
        assert ("C", "D") in rules.routes["D0036001"] and ("C", "X") in rules.routes["D0036001"]
        assert rules.inbound.everyone.deny == {"BADP"}
        assert rules.inbound.flows["D0010"].allow == {"UDMS", "LBSL"}
        assert rules.outbound.lists_for("D0155001")[1].deny == {"OESL"}
        assert rules.test_data.routing_key_prefix == "test" and rules.test_data.exchange == "dtn.events.test"
        assert rules.limits.max_event_bytes == 500
        (route,) = rules.subscribers
        assert route.name == "readings" and route.flows == {"D0010002"}
        assert [(r.path, r.action) for r in route.redactions["D0010002"]] == [
            ("mpan_cores.site_visits", "remove"), ("mpan_cores.meter_reading_types.meter_id", "mask")]

    def test_lists_for(self) -> None:
        """A flow's lists: the general one, then the flow's, then the flow version's."""
        rules = parse({"participants": {"inbound": {"deny": ["AAAA"], "flows": {
            "D0010": {"deny": ["BBBB"]}, "D0010002": {"deny": ["CCCC"]}, "D0155": {"deny": ["DDDD"]}}}}})
        denied = [lists.deny for lists in rules.inbound.lists_for("D0010002")]
        assert denied == [{"AAAA"}, {"BBBB"}, {"CCCC"}]
        assert [lists.deny for lists in rules.inbound.lists_for("D0086002")] == [{"AAAA"}]

    def test_selector_covers_versions(self) -> None:
        """A flow without version selects every version (D0150 v001 and v002)."""
        rules = parse({"routing": {"add": {"D0150": [{"from": "X", "to": "X"}]}}})
        assert ("X", "X") in rules.routes["D0150001"] and ("X", "X") in rules.routes["D0150002"]
        assert ("X", "X") not in rules.routes["D0155001"]

    def test_subscriber_paths_per_flow(self) -> None:
        """A path is compiled for the flows that have it, and must exist in at least one."""
        rules = parse({"subscribers": [{"name": "agents", "routing_key_prefix": "minimised.agents",
                                        "flows": ["D0010", "D0155"], "remove": ["mpan_cores.address_line_1"]}]})
        (route,) = rules.subscribers
        assert set(route.redactions) == {"D0155001"}
        assert route.applies_to("D0010002") and route.applies_to("D0155001") and not route.applies_to("D0086002")

    def test_subscriber_all_flows(self) -> None:
        rules = parse({"subscribers": [{"name": "all", "routing_key_prefix": "copy"}]})
        assert rules.subscribers[0].flows is None and rules.subscribers[0].applies_to("P0135001")


@pytest.mark.parametrize(("raw", "key", "words"), [
    ([], "rules", "expected a mapping"),
    ({"rule": {}}, "rules.rule", "unknown key"),
    ({"routing": {"unrouted": "warn"}}, "rules.routing.unrouted", "not one of: accept, reject"),
    ({"routing": {"enforce": "yes"}}, "rules.routing.enforce", "expected true or false"),
    ({"routing": {"add": {"D9999": []}}}, "rules.routing.add.D9999", "names no loaded flow definition"),
    ({"routing": {"add": {"d0010": []}}}, "rules.routing.add.d0010", "is not a flow like D0010"),
    ({"routing": {"add": {"D0010": [{"from": "XX", "to": "D"}]}}}, "rules.routing.add.D0010[0].from",
     "market role code"),
    ({"routing": {"add": {"D0010": [{"from": "X"}]}}}, "rules.routing.add.D0010[0].to", "is required"),
    ({"routing": {"add": {"D0010": {"from": "X"}}}}, "rules.routing.add.D0010", "expected a list"),
    ({"addressee": {"enforce": 1}}, "rules.addressee.enforce", "expected true or false"),
    ({"sender": {"check": True}}, "rules.sender.check", "did you mean 'check_role'"),
    ({"participants": {"inbound": {"deny": "BADP"}}}, "rules.participants.inbound.deny", "expected a list"),
    ({"participants": {"inbound": {"deny": ["badp"]}}}, "rules.participants.inbound.deny[0]", "is not an MPID"),
    ({"participants": {"outbound": {"allow": [1234]}}}, "rules.participants.outbound.allow[0]",
     "expected a string"),
    ({"participants": {"inbound": {"flows": {"D9011": {}}}}}, "rules.participants.inbound.flows.D9011",
     "did you mean"),
    ({"participants": {"inbound": {"flows": {"D0010": {"denied": []}}}}},
     "rules.participants.inbound.flows.D0010.denied", "unknown key"),
    ({"participants": {"sideways": {}}}, "rules.participants.sideways", "unknown key"),
    ({"test_data": {"routing_key_prefix": ""}}, "rules.test_data.routing_key_prefix", "may not be empty"),
    ({"test_data": {"routing_key_prefix": "inbound.test"}}, "rules.test_data.routing_key_prefix",
     "starts like a production routing key"),
    ({"test_data": {"routing_key_prefix": "Test"}}, "rules.test_data.routing_key_prefix", "not a routing-key"),
    ({"test_data": {"action": "drop"}}, "rules.test_data.action", "not one of: route, reject"),
    ({"test_data": {"production_flag": "oper"}}, "rules.test_data.production_flag", "test data flag"),
    ({"test_data": {"exchange": "a b"}}, "rules.test_data.exchange", "exchange name"),
    ({"limits": {"max_event_bytes": 0}}, "rules.limits.max_event_bytes", "at least 1"),
    ({"limits": {"max_file_bytes": "1G"}}, "rules.limits.max_file_bytes", "expected an integer"),
    ({"limits": {"max_flow_instances": True}}, "rules.limits.max_flow_instances", "expected an integer"),
    ({"subscribers": {}}, "rules.subscribers", "expected a list"),
    ({"subscribers": [{"routing_key_prefix": "x"}]}, "rules.subscribers[0].name", "is required"),
    ({"subscribers": [{"name": "a"}]}, "rules.subscribers[0].routing_key_prefix", "is required"),
    ({"subscribers": [{"name": "A", "routing_key_prefix": "x"}]}, "rules.subscribers[0].name", "lower case"),
    ({"subscribers": [{"name": "a", "routing_key_prefix": "x"}, {"name": "a", "routing_key_prefix": "y"}]},
     "rules.subscribers[1].name", "name of another"),
    ({"subscribers": [{"name": "a", "routing_key_prefix": "x"}, {"name": "b", "routing_key_prefix": "x."}]},
     "rules.subscribers[1].routing_key_prefix", "prefix of another"),
    ({"subscribers": [{"name": "a", "routing_key_prefix": "inbound.min"}]},
     "rules.subscribers[0].routing_key_prefix", "production or test"),
    ({"subscribers": [{"name": "a", "routing_key_prefix": "test.min"}]},
     "rules.subscribers[0].routing_key_prefix", "production or test"),
    ({"test_data": {"routing_key_prefix": "sandbox"},
      "subscribers": [{"name": "a", "routing_key_prefix": "sandbox.min"}]},
     "rules.subscribers[0].routing_key_prefix", "production or test"),
    ({"subscribers": [{"name": "a", "routing_key_prefix": "x", "flows": []}]}, "rules.subscribers[0].flows",
     "at least one flow"),
    ({"subscribers": [{"name": "a", "routing_key_prefix": "x", "flows": ["D0000"]}]},
     "rules.subscribers[0].flows[0]", "names no loaded flow definition"),
    ({"subscribers": [{"name": "a", "routing_key_prefix": "x", "remove": ["mpan_cores"]}]},
     "rules.subscribers[0].remove[0]", "is not a data path"),
    ({"subscribers": [{"name": "a", "routing_key_prefix": "x", "flows": ["D0010"],
                       "remove": ["mpan_cores.adress_line_1"]}]},
     "rules.subscribers[0].remove[0]", "is not an item or group below a level-1 group of D0010"),
    ({"subscribers": [{"name": "a", "routing_key_prefix": "x", "flows": ["D0010"],
                       "mask": ["mpan_cores.site_visits"]}]},
     "rules.subscribers[0].mask[0]", "can be removed, not masked"),
    ({"subscribers": [{"name": "a", "routing_key_prefix": "x", "remove": ["mpan_cores.mpan_core"],
                       "mask": ["mpan_cores.mpan_core"]}]},
     "rules.subscribers[0].mask[0]", "listed twice"),
    ({"subscribers": [{"name": "a", "routing_key_prefix": "x", "mask": ["mpan_cores.meter_id"]}]},
     "rules.subscribers[0].mask[0]", "not an item or group"),
    ({"subscribers": [{"name": "a", "routing_key_prefix": "x", "colour": "red"}]},
     "rules.subscribers[0].colour", "unknown key"),
])
def test_errors_name_the_key(raw: Any, key: str, words: str) -> None:
    """Every mistake is one ConfigError naming the dotted key, the file and what is wrong."""
    caught = error(raw)
    assert caught.key == key, caught
    assert words in caught.message, caught
    assert str(caught).startswith(f"bridge.yaml: {key}: ")


def test_documented_example() -> None:
    """The configuration example of docs/governance.md is valid."""
    import re

    import yaml

    from tests.conftest import REPO

    text = (REPO / "docs" / "governance.md").read_text(encoding="utf-8")
    block = next(found for found in re.findall(r"```yaml\n(.*?)```", text, re.DOTALL) if "rules:" in found)
    document = yaml.safe_load(block)
    rules = parse_rules(document["rules"], participant_id=document["participant"]["id"],
                        participant_role=document["participant"]["role"], definitions=DEFINITIONS)
    assert [route.name for route in rules.subscribers] == ["readings", "appointments"]
    assert rules.inbound.everyone.deny == {"BADP"}
