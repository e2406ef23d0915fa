"""`rules:` of the configuration -> a checked, frozen `RuleSet`.

Like the rest of the configuration, every error is a `ConfigError` naming the dotted key
(`rules.limits.max_event_bytes`) and unknown keys are errors: a misspelt deny list must stop the start, not silently
admit everyone. Flow selectors and data paths are checked against the flow definitions, so a typo in a redaction
cannot leave data unredacted.
"""

from __future__ import annotations

import re
from collections.abc import Collection, Mapping
from dataclasses import dataclass
from types import MappingProxyType
from typing import Any, Literal, cast

from bridge.dtn.compiled import FlowDefinition, GroupDefinition
from bridge.dtn.definitions import FLOW_SELECTOR, DefinitionSet
from bridge.rules.model import (
    BroadcastRules,
    DirectionRules,
    LimitRules,
    ParticipantList,
    Redaction,
    RuleSet,
    SubscriberRoute,
    TestDataRules,
)
from bridge.schema import Node, did_you_mean

_MPID = re.compile(r"[A-Z0-9]{4}")
_ROLE = re.compile(r"[A-Z0-9]")
_FLAG = re.compile(r"[A-Z0-9]{1,4}")
_WORD = r"[a-z0-9_-]+"
_PREFIX = re.compile(rf"{_WORD}(?:\.{_WORD})*")
_NAME = re.compile(r"[a-z0-9][a-z0-9_-]*")
_EXCHANGE = re.compile(r"[A-Za-z0-9_.:-]+")
_PATH = re.compile(r"[a-z][a-z0-9_]*(?:\.[a-z][a-z0-9_]*)+")
# First words of the routing keys production traffic uses (docs/operations.md): a test or subscriber prefix must
# differ, so that no production binding (inbound.#, outbound.#, file.received.#) ever matches them.
_RESERVED_WORDS = frozenset({"inbound", "outbound", "file"})

_TOP = {"routing", "addressee", "sender", "participants", "test_data", "limits", "subscribers", "broadcast"}


@dataclass(frozen=True, slots=True)
class RulesDocument:
    """The raw `rules:` mapping and whose rules they are: the plain values a worker process parses its RuleSet from
    (against its own definitions), so that it never needs the configuration."""

    raw: Mapping[str, Any] | None
    participant_id: str
    participant_role: str
    source: str | None = None

    def parse(self, definitions: DefinitionSet) -> RuleSet:
        return parse_rules(self.raw, participant_id=self.participant_id, participant_role=self.participant_role,
                           definitions=definitions, source=self.source)


def parse_rules(raw: Mapping[str, Any] | None, *, participant_id: str, participant_role: str,
                definitions: DefinitionSet, source: str | None = None) -> RuleSet:
    """Validate the raw `rules:` mapping (None: the defaults) against the flow definitions."""
    root = Node("rules", raw, source)
    root.check_keys(_TOP)
    routing = root.section("routing")
    routing.check_keys({"enforce", "unrouted", "add"})
    routes = _routes(routing.section("add"), definitions)
    addressee = root.section("addressee")
    addressee.check_keys({"enforce", "check_role"})
    sender = root.section("sender")
    sender.check_keys({"enforce", "check_role"})
    participants = root.section("participants")
    participants.check_keys({"inbound", "outbound"})
    test_data = _test_data(root.section("test_data"))
    return RuleSet(
        participant_id=participant_id,
        participant_role=participant_role,
        routes=routes,
        enforce_routes=routing.boolean("enforce", True),
        unrouted=cast(Literal["accept", "reject"], routing.choice("unrouted", "accept", ("accept", "reject"))),
        addressee_enforce=addressee.boolean("enforce", True),
        addressee_check_role=addressee.boolean("check_role", False),
        sender_enforce=sender.boolean("enforce", False),
        sender_check_role=sender.boolean("check_role", False),
        inbound=_direction(participants.section("inbound"), definitions),
        outbound=_direction(participants.section("outbound"), definitions),
        test_data=test_data,
        limits=_limits(root.section("limits")),
        broadcast=_broadcast(root.section("broadcast"), definitions),
        subscribers=_subscribers(root, definitions, test_data),
        definitions=definitions,
    )


# -- sections ------------------------------------------------------------------------------------------------------


def _routes(add: Node, definitions: DefinitionSet) -> Mapping[str, frozenset[tuple[str, str]]]:
    routes = {reference: set(definitions.outline(reference).routes) for reference in definitions}  # no compiling
    for selector in add.mapping_keys():
        references = select_flows(add, selector, definitions)
        entries = add.sequence(selector)
        for index, entry in enumerate(entries):
            node = Node(f"{add.key}.{selector}[{index}]", entry, add.source)
            node.check_keys({"from", "to", "note"})
            pair = (node.string("from", pattern=_ROLE, hint="a market role code (1 character)"),
                    node.string("to", pattern=_ROLE, hint="a market role code (1 character)"))
            for reference in references:
                routes[reference].add(pair)
    return MappingProxyType({reference: frozenset(pairs) for reference, pairs in routes.items()})


def _direction(node: Node, definitions: DefinitionSet) -> DirectionRules:
    node.check_keys({"allow", "deny", "flows"})
    everyone = _participant_list(node)
    flows_node = node.section("flows")
    flows: dict[str, ParticipantList] = {}
    for selector in flows_node.mapping_keys():
        select_flows(flows_node, selector, definitions)
        entry = flows_node.section(selector)
        entry.check_keys({"allow", "deny"})
        flows[selector] = _participant_list(entry)
    return DirectionRules(everyone, MappingProxyType(flows))


def _participant_list(node: Node) -> ParticipantList:
    return ParticipantList(frozenset(node.strings("allow", pattern=_MPID, hint="an MPID (4 upper-case letters or "
                                                                                "digits)")),
                           frozenset(node.strings("deny", pattern=_MPID, hint="an MPID (4 upper-case letters or "
                                                                              "digits)")))


def _test_data(node: Node) -> TestDataRules:
    node.check_keys({"production_flag", "action", "routing_key_prefix", "exchange"})
    prefix = node.string("routing_key_prefix", "test").rstrip(".")
    if not _PREFIX.fullmatch(prefix):
        raise node.error("routing_key_prefix", f"{prefix!r} is not a routing-key prefix like 'test' (lower-case "
                                               "words separated by dots); it may not be empty: test traffic must "
                                               "never share production's routing keys")
    if prefix.split(".")[0] in _RESERVED_WORDS:
        raise node.error("routing_key_prefix", f"{prefix!r} starts like a production routing key "
                                               f"({', '.join(sorted(_RESERVED_WORDS))})")
    exchange = node.optional_string("exchange", pattern=_EXCHANGE, hint="an exchange name")
    return TestDataRules(
        production_flag=node.string("production_flag", "OPER", pattern=_FLAG, hint="a test data flag like OPER"),
        action=cast(Literal["route", "reject"], node.choice("action", "route", ("route", "reject"))),
        routing_key_prefix=prefix,
        exchange=exchange,
    )


def _limits(node: Node) -> LimitRules:
    node.check_keys({"max_file_bytes", "max_flow_instances", "max_event_bytes"})
    return LimitRules(*(node.optional_integer(name, minimum=1)
                        for name in ("max_file_bytes", "max_flow_instances", "max_event_bytes")))


def _broadcast(node: Node, definitions: DefinitionSet) -> BroadcastRules:
    node.check_keys({"flows", "flag_values"})
    flows = node.strings("flows")
    for position, selector in enumerate(flows):
        select_flows(node, selector, definitions, key=f"flows[{position}]")
    flags = node.string_list("flag_values", ["Y"])
    for position, flag in enumerate(flags):
        if len(flag) != 1 or not flag.isascii() or not flag.isprintable() or flag in " |":
            raise node.error(f"flag_values[{position}]", f"{flag!r} is not a ZHV broadcast flag (one printable "
                                                         "character, not a space or '|')")
    return BroadcastRules(frozenset(flows), frozenset(flags))


def _subscribers(root: Node, definitions: DefinitionSet, test_data: TestDataRules) -> tuple[SubscriberRoute, ...]:
    routes: list[SubscriberRoute] = []
    names: set[str] = set()
    prefixes: set[str] = set()
    test_word = test_data.routing_key_prefix.split(".")[0]
    for index, entry in enumerate(root.sequence("subscribers")):
        node = Node(f"rules.subscribers[{index}]", entry, root.source)
        node.check_keys({"name", "routing_key_prefix", "flows", "remove", "mask"})
        name = node.string("name", pattern=_NAME, hint="a name in lower case (letters, digits, _ and -)")
        if name in names:
            raise node.error("name", f"{name!r} is the name of another subscriber route")
        prefix = node.string("routing_key_prefix").rstrip(".")
        if not _PREFIX.fullmatch(prefix):
            raise node.error("routing_key_prefix", f"{prefix!r} is not a routing-key prefix like "
                                                   "'minimised.readings' (lower-case words separated by dots)")
        if prefix.split(".")[0] in _RESERVED_WORDS | {test_word}:
            raise node.error("routing_key_prefix", f"{prefix!r} starts like a production or test routing key: "
                                                   "minimised copies must never match their bindings")
        if prefix in prefixes:
            raise node.error("routing_key_prefix", f"{prefix!r} is the prefix of another subscriber route")
        names.add(name)
        prefixes.add(prefix)
        flows: frozenset[str] | None = None
        if node.has("flows"):
            selectors = node.strings("flows", pattern=FLOW_SELECTOR, hint="a flow like D0010 or D0010002")
            if not selectors:
                raise node.error("flows", "must name at least one flow (leave it out for every flow)")
            for position, selector in enumerate(selectors):
                select_flows(node, selector, definitions, key=f"flows[{position}]")
            flows = frozenset(selectors)
        chosen = [definition for reference, definition in definitions.items()
                  if flows is None or reference in flows or reference[:5] in flows]
        redactions: dict[str, list[Redaction]] = {definition.reference: [] for definition in chosen}
        seen: set[str] = set()
        actions: tuple[Literal["remove", "mask"], ...] = ("remove", "mask")
        for action in actions:
            for position, path in enumerate(node.strings(action)):
                key = f"{action}[{position}]"
                path = path.removeprefix("data.")
                if not _PATH.fullmatch(path):
                    raise node.error(key, f"{path!r} is not a data path like mpan_cores.meter_id (keys from the "
                                          "level-1 group down, separated by dots)")
                if path in seen:
                    raise node.error(key, f"{path!r} is listed twice")
                seen.add(path)
                segments = tuple(path.split("."))
                found = False
                for definition in chosen:
                    kind = _resolve(definition, segments)
                    if kind is None:
                        continue
                    if kind == "group" and action == "mask":
                        raise node.error(key, f"{path!r} is a group in {definition.reference}: groups can be "
                                              "removed, not masked")
                    found = True
                    redactions[definition.reference].append(Redaction(path, segments, action))
                if not found:
                    where = ", ".join(sorted(flows)) if flows is not None else "any flow"
                    raise node.error(key, f"{path!r} is not an item or group below a level-1 group of {where}")
        routes.append(SubscriberRoute(name, prefix, flows, MappingProxyType(
            {reference: tuple(found) for reference, found in redactions.items() if found})))
    return tuple(routes)


def _resolve(definition: FlowDefinition, segments: tuple[str, ...]) -> str | None:
    """'item' or 'group' when the path names one below a level-1 group of the flow, else None."""
    groups: list[GroupDefinition] = definition.level1
    group = next((candidate for candidate in groups if candidate.key == segments[0]), None)
    if group is None:
        return None
    for position, segment in enumerate(segments[1:], 1):
        last = position == len(segments) - 1
        child = next((candidate for candidate in group.children if candidate.key == segment), None)
        if child is not None:
            if last:
                return "group"
            group = child
            continue
        if last and any(item.key == segment and item.presence != "unused" for item in group.items):
            return "item"
        return None
    return None


def select_flows(node: Node, selector: str, definitions: Collection[str], key: str | None = None) -> list[str]:
    """The flow references a selector (D0010 or D0010002) names among `definitions`; an error when it names none."""
    key = key if key is not None else selector
    if not FLOW_SELECTOR.fullmatch(selector):
        raise node.error(key, f"{selector!r} is not a flow like D0010 or a flow version like D0010002")
    references = [reference for reference in definitions if reference == selector or reference[:5] == selector]
    if not references:
        hint = did_you_mean(selector, list(definitions), list_known=False)
        raise node.error(key, f"{selector!r} names no loaded flow definition{hint}")
    return references
