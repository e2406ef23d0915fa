"""`rules:` of the configuration -> a checked, frozen `RuleSet`.

Like the rest of the configuration, every error is a `ConfigError` naming the dotted key (`rules.limits.max_event_bytes`)
and unknown keys are errors: a misspelt deny list must stop the start, not silently admit everyone. Flow selectors
and data paths are checked against the flow definitions, so a typo in a redaction cannot leave data unredacted.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from difflib import get_close_matches
from types import MappingProxyType
from typing import Any, Literal, cast

from bridge.config import describe_value
from bridge.dtn.definitions import DefinitionSet, FlowDefinition, GroupDefinition
from bridge.errors import ConfigError
from bridge.rules.model import (
    DirectionRules,
    LimitRules,
    ParticipantList,
    Redaction,
    RuleSet,
    SubscriberRoute,
    TestDataRules,
)

_MPID = re.compile(r"[A-Z0-9]{4}")
_ROLE = re.compile(r"[A-Z0-9]")
_SELECTOR = re.compile(r"[A-Z][A-Z0-9]{4}(?:[0-9]{3})?")
_FLAG = re.compile(r"[A-Z0-9]{1,4}")
_WORD = r"[a-z0-9_-]+"
_PREFIX = re.compile(rf"{_WORD}(?:\.{_WORD})*")
_NAME = re.compile(r"[a-z0-9][a-z0-9_-]*")
_EXCHANGE = re.compile(r"[A-Za-z0-9_.:-]+")
_PATH = re.compile(r"[a-z][a-z0-9_]*(?:\.[a-z][a-z0-9_]*)+")
# First words of the routing keys production traffic uses (docs/operations.md): a test or subscriber prefix must
# differ, so that no production binding (inbound.#, outbound.#, file.received.#) ever matches them.
_RESERVED_WORDS = frozenset({"inbound", "outbound", "file"})

_TOP = {"routing", "addressee", "sender", "participants", "test_data", "limits", "subscribers"}


def parse_rules(raw: Mapping[str, Any] | None, *, participant_id: str, participant_role: str,
                definitions: DefinitionSet, source: str | None = None) -> RuleSet:
    """Validate the raw `rules:` mapping (None: the defaults) against the flow definitions."""
    root = _Node("rules", raw, source)
    root.keys(_TOP)
    routing = root.child("routing")
    routing.keys({"enforce", "unrouted", "add"})
    routes = _routes(routing.child("add"), definitions)
    addressee = root.child("addressee")
    addressee.keys({"enforce", "check_role"})
    sender = root.child("sender")
    sender.keys({"enforce", "check_role"})
    participants = root.child("participants")
    participants.keys({"inbound", "outbound"})
    test_data = _test_data(root.child("test_data"))
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
        inbound=_direction(participants.child("inbound"), definitions),
        outbound=_direction(participants.child("outbound"), definitions),
        test_data=test_data,
        limits=_limits(root.child("limits")),
        subscribers=_subscribers(root, definitions, test_data),
        definitions=definitions,
    )


# -- sections ------------------------------------------------------------------------------------------------------


def _routes(add: _Node, definitions: DefinitionSet) -> Mapping[str, frozenset[tuple[str, str]]]:
    routes = {reference: set(definitions.outline(reference).routes) for reference in definitions}  # no compiling
    for selector in add.mapping_keys():
        references = _select(add, selector, definitions)
        entries = add.sequence(selector)
        for index, entry in enumerate(entries):
            node = _Node(f"{add.key}.{selector}[{index}]", entry, add.source)
            node.keys({"from", "to", "note"})
            pair = (node.string("from", pattern=_ROLE, hint="a market role code (1 character)"),
                    node.string("to", pattern=_ROLE, hint="a market role code (1 character)"))
            for reference in references:
                routes[reference].add(pair)
    return MappingProxyType({reference: frozenset(pairs) for reference, pairs in routes.items()})


def _direction(node: _Node, definitions: DefinitionSet) -> DirectionRules:
    node.keys({"allow", "deny", "flows"})
    everyone = _participant_list(node)
    flows_node = node.child("flows")
    flows: dict[str, ParticipantList] = {}
    for selector in flows_node.mapping_keys():
        _select(flows_node, selector, definitions)
        entry = flows_node.child(selector)
        entry.keys({"allow", "deny"})
        flows[selector] = _participant_list(entry)
    return DirectionRules(everyone, MappingProxyType(flows))


def _participant_list(node: _Node) -> ParticipantList:
    return ParticipantList(frozenset(node.strings("allow", pattern=_MPID, hint="an MPID (4 upper-case letters or "
                                                                                "digits)")),
                           frozenset(node.strings("deny", pattern=_MPID, hint="an MPID (4 upper-case letters or "
                                                                              "digits)")))


def _test_data(node: _Node) -> TestDataRules:
    node.keys({"production_flag", "action", "routing_key_prefix", "exchange"})
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


def _limits(node: _Node) -> LimitRules:
    node.keys({"max_file_bytes", "max_flow_instances", "max_event_bytes"})
    return LimitRules(node.positive("max_file_bytes"), node.positive("max_flow_instances"),
                      node.positive("max_event_bytes"))


def _subscribers(root: _Node, definitions: DefinitionSet, test_data: TestDataRules) -> tuple[SubscriberRoute, ...]:
    routes: list[SubscriberRoute] = []
    names: set[str] = set()
    prefixes: set[str] = set()
    test_word = test_data.routing_key_prefix.split(".")[0]
    for index, entry in enumerate(root.sequence("subscribers")):
        node = _Node(f"rules.subscribers[{index}]", entry, root.source)
        node.keys({"name", "routing_key_prefix", "flows", "remove", "mask"})
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
            selectors = node.strings("flows", pattern=_SELECTOR, hint="a flow like D0010 or D0010002")
            if not selectors:
                raise node.error("flows", "must name at least one flow (leave it out for every flow)")
            for position, selector in enumerate(selectors):
                _select(node, selector, definitions, key=f"flows[{position}]")
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


def _select(node: _Node, selector: str, definitions: DefinitionSet, key: str | None = None) -> list[str]:
    """The flow references a selector (D0010 or D0010002) names; an error when it names none."""
    key = key if key is not None else selector
    if not _SELECTOR.fullmatch(selector):
        raise node.error(key, f"{selector!r} is not a flow like D0010 or a flow version like D0010002")
    references = [reference for reference in definitions if reference == selector or reference[:5] == selector]
    if not references:
        close = get_close_matches(selector, list(definitions), n=1)
        hint = f"; did you mean {close[0]!r}?" if close else ""
        raise node.error(key, f"{selector!r} names no loaded flow definition{hint}")
    return references


# -- machinery -----------------------------------------------------------------------------------------------------


class _Node:
    """One mapping of `rules:` with its dotted key: typed getters raising ConfigError on the key."""

    __slots__ = ("data", "key", "source")

    def __init__(self, key: str, data: object, source: str | None) -> None:
        self.key = key
        self.source = source
        if data is None:
            data = {}
        if not isinstance(data, Mapping):
            raise ConfigError(key, f"expected a mapping, got {describe_value(data)}", source)
        for name in data:
            if not isinstance(name, str):
                raise ConfigError(f"{key}.{name}", "keys must be strings", source)
        self.data: Mapping[str, Any] = data

    def error(self, name: str, message: str) -> ConfigError:
        return ConfigError(f"{self.key}.{name}", message, self.source)

    def keys(self, known: set[str]) -> None:
        for name in self.data:
            if name not in known:
                close = get_close_matches(name, list(known), n=1)
                hint = f"; did you mean {close[0]!r}?" if close else f"; known keys: {', '.join(sorted(known))}"
                raise self.error(name, f"unknown key{hint}")

    def has(self, name: str) -> bool:
        return self.data.get(name) is not None

    def mapping_keys(self) -> list[str]:
        return list(self.data)

    def child(self, name: str) -> _Node:
        return _Node(f"{self.key}.{name}", self.data.get(name), self.source)

    def sequence(self, name: str) -> list[Any]:
        value = self.data.get(name)
        if value is None:
            return []
        if not isinstance(value, list):
            raise self.error(name, f"expected a list, got {describe_value(value)}")
        return value

    def strings(self, name: str, *, pattern: re.Pattern[str] | None = None, hint: str = "") -> list[str]:
        values = self.sequence(name)
        for index, value in enumerate(values):
            if not isinstance(value, str):
                raise self.error(f"{name}[{index}]", f"expected a string, got {describe_value(value)}")
            if pattern is not None and not pattern.fullmatch(value):
                raise self.error(f"{name}[{index}]", f"{value!r} is not {hint}")
        return values

    def string(self, name: str, default: str | None = None, *, pattern: re.Pattern[str] | None = None,
               hint: str = "") -> str:
        value = self.data.get(name, default)
        if value is None:
            raise self.error(name, "is required")
        if not isinstance(value, str):
            raise self.error(name, f"expected a string, got {describe_value(value)}")
        if pattern is not None and not pattern.fullmatch(value):
            raise self.error(name, f"{value!r} is not {hint}")
        return value

    def optional_string(self, name: str, *, pattern: re.Pattern[str], hint: str) -> str | None:
        return None if self.data.get(name) is None else self.string(name, pattern=pattern, hint=hint)

    def choice(self, name: str, default: str, choices: tuple[str, ...]) -> str:
        value = self.string(name, default)
        if value not in choices:
            raise self.error(name, f"{value!r} is not one of: {', '.join(choices)}")
        return value

    def boolean(self, name: str, default: bool) -> bool:
        value = self.data.get(name, default)
        if not isinstance(value, bool):
            raise self.error(name, f"expected true or false, got {describe_value(value)}")
        return value

    def positive(self, name: str) -> int | None:
        value = self.data.get(name)
        if value is None:
            return None
        if isinstance(value, bool) or not isinstance(value, int):
            raise self.error(name, f"expected an integer or null, got {describe_value(value)}")
        if value < 1:
            raise self.error(name, f"must be at least 1, got {value}")
        return value
