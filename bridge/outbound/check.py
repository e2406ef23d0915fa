"""Stage 1 of the outbound direction: message bytes -> a checked event (or a manifest), or a typed rejection.

Nothing reaches a file without passing, in this order: JSON object -> signature (trust store) -> known flow ->
data fits the flow definition -> envelope attributes usable in a file header -> governance. The order is
cheap-and-safe first: an unsigned or untrusted message is not even looked at further. Each failure is one stable
machine code plus words for people; the loop dead-letters the message with both.

A checked event keeps only what batching and writing need, as plain values (its flow instance as DTN records,
its keys, its source file's header), so the stage runs the same in the daemon or in a worker process that sends
its answers through a pipe (bridge/outbound/workers.py).
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, replace
from typing import Any

import orjson
import structlog

from bridge.dtn.compiled import FlowDefinition
from bridge.dtn.definitions import DefinitionSet
from bridge.dtn.model import FileHeader
from bridge.dtn.writer import instance_records
from bridge.errors import EventError, SignatureError
from bridge.events.envelope import (
    FILE_ATTRIBUTES,
    MPID,
    ROLE_CODE,
    Event,
    dataschema_for,
    definition_for,
    event_to_instance,
    header_of,
    participant_of,
    trailer_of,
)
from bridge.events.manifest import MANIFEST_SCHEMA, MANIFEST_TYPES
from bridge.interning import Interner
from bridge.ports import EventKey
from bridge.rules import Decision, EventRouter, RuleSet
from bridge.signing import TrustStore

log = structlog.get_logger("dtn_bridge.outbound")

# Reject codes of this module (signature failures use SignatureError.reason, see bridge/signing/reasons.py).
NOT_JSON = "not_json"
JSON_AMBIGUOUS = "json_ambiguous"
UNKNOWN_FLOW = "unknown_flow"
SCHEMA_INVALID = "schema_invalid"
ENVELOPE_INVALID = "envelope_invalid"
MANIFEST_INVALID = "manifest_invalid"
INTERNAL_ERROR = "internal_error"

_TEST_FLAG = re.compile(r"[A-Z0-9]{1,4}")
_SHA256 = re.compile(r"[0-9a-f]{64}")


class _Portable:
    """Pickled as a call of its constructor, which reads back several times faster than a dataclass's state: a
    worker's answers are read by the daemon, whose time is what bounds the outbound rate."""

    __slots__ = ()

    def __reduce__(self) -> tuple[type, tuple[object, ...]]:
        names: tuple[str, ...] = self.__slots__  # the dataclass's fields, in order
        return type(self), tuple(getattr(self, name) for name in names)


class EventRejected(EventError):
    """The message cannot be written to a DTN file; `code` is the stable machine reason (dead-letter header)."""

    def __init__(self, code: str, message: str) -> None:
        self.code = code
        super().__init__(message)


@dataclass(frozen=True, slots=True)
class BatchKey(_Portable):
    """Which new file an event may share: one file per flow version, sender, recipient (with roles), test flag."""

    flow: str  # flow reference, e.g. D0010002
    from_participant: str
    from_role: str
    to_participant: str
    to_role: str
    test_flag: str


@dataclass(frozen=True, slots=True)
class Origin(_Portable):
    """The source file an event came from (when it carries the whole original envelope): enough to write it again."""

    key: str  # "<from>|<file identifier>|<created>|<flow reference>", also the ledger's `origin`
    index: int  # dtcindex, 1-based
    flow_count: int  # dtcflowcount
    header: FileHeader
    completed: str  # the trailer's File Completion Timestamp
    dtn_checksum: str  # the ZHV trailer's checksum, carried verbatim
    attributes: tuple[object, ...]  # every file-level attribute: all events of one file agree on them


@dataclass(frozen=True, slots=True)
class CheckedEvent(_Portable):
    """An event that passed every check, with what batching and writing need already worked out."""

    id: str
    source: str  # with `id`, what makes the event one (CloudEvents): duplicates are found by both
    flow: str  # flow reference, e.g. D0010002
    records: tuple[str, ...]  # the flow instance as DTN records (`instance_records`), checked against its definition
    batch_key: BatchKey | None  # None: no test data flag, so it can only be written back within its source file
    origin: Origin | None  # None: a new event, written into a batched file

    @property
    def key(self) -> EventKey:
        """The event's identity in the ledger and the batcher: (`source`, `id`)."""
        return (self.source, self.id)


@dataclass(frozen=True, slots=True)
class ManifestNotice(_Portable):
    """A checked `uk.dtc.file.received` manifest: the SHA-256 its source file must reproduce to."""

    id: str
    source: str  # the sender's source: the manifest describes the sender's own first event only
    first_event_id: str  # the source file's dtcindex 1 event: how the manifest finds the reproduced file
    sha256: str

    @property
    def first_event(self) -> EventKey:
        """The ledger key of the source file's first event."""
        return (self.source, self.first_event_id)


def origin_key(from_participant: str, file_identifier: str, created: str, flow_reference: str) -> str:
    """The ledger key of a source file: the manifest and the events of one file compute the same one."""
    return f"{from_participant}|{file_identifier}|{created}|{flow_reference}"


@dataclass(frozen=True, slots=True)
class Rejection(_Portable):
    """Why a message cannot reach a file: a stable machine code (the dead-letter header) and words for people."""

    code: str
    reason: str


@dataclass(frozen=True, slots=True)
class Checked(_Portable):
    """Stage 1's answer for one message, and the governance decision on it when governance saw it (for the metrics)."""

    outcome: CheckedEvent | ManifestNotice | Rejection
    decision: Decision | None = None


class MessageChecker:
    """Checks message bodies against the trust store, the flow definitions and the governance rules (thread-safe;
    it keeps nothing but shared copies of equal values). `check` answers with a value, never an exception, so that it
    can answer from a worker process."""

    def __init__(self, definitions: DefinitionSet, trust: TrustStore, rules: RuleSet | None = None) -> None:
        self.definitions = definitions
        self.trust = trust
        self._route = EventRouter("outbound", rules) if rules is not None else None
        self._share = Interner()  # equal keys, headers and decisions as one object each

    def check(self, body: bytes) -> Checked:
        """Check and govern one message body."""
        try:
            item, event = self._check_body(body)
        except EventRejected as exc:
            return Checked(Rejection(exc.code, str(exc)))
        except Exception as exc:  # a defect must not turn one message into a poison pill that stops the queue
            log.exception("outbound_check_failed")
            return Checked(Rejection(INTERNAL_ERROR, f"the check failed: {type(exc).__name__}: {exc}"))
        if self._route is None or isinstance(item, ManifestNotice):
            return Checked(item)
        decision = self._share(replace(self._route(event), outputs=()))
        if not decision.accepted:
            return Checked(Rejection(decision.rule, f"governance rule {decision.rule}: {decision.reason}"), decision)
        return Checked(item, decision)

    def check_or_raise(self, body: bytes) -> CheckedEvent | ManifestNotice:
        """Check one message body (no governance); raise EventRejected with the reason."""
        return self._check_body(body)[0]

    def _check_body(self, body: bytes) -> tuple[CheckedEvent | ManifestNotice, Event]:
        event = _parse(body)
        try:
            self.trust.verify(event, from_json=True)
        except SignatureError as exc:
            raise EventRejected(exc.reason, f"signature: {exc}") from exc
        event_id = event.get("id")
        if not isinstance(event_id, str) or not event_id:
            raise EventRejected(ENVELOPE_INVALID, "attribute 'id' must be a non-empty string")
        if event.get("type") in MANIFEST_TYPES:
            return _manifest(event, event_id), event
        try:
            definition = definition_for(event, self.definitions)
        except EventError as exc:
            raise EventRejected(UNKNOWN_FLOW, str(exc)) from exc
        _check_dataschema(event, dataschema_for(definition.reference))
        try:
            root = event_to_instance(event, definition)
        except EventError as exc:
            raise EventRejected(SCHEMA_INVALID, str(exc)) from exc
        origin = _origin(event, definition, self._share)
        try:
            batch_key = self._share(_batch_key(event, definition))
        except EventRejected:
            if origin is None:
                raise
            batch_key = None  # reproducible within its source file only
        source = event["source"]  # a participant source: both the batch key and the origin's header checked it
        checked = CheckedEvent(event_id, source, definition.reference, instance_records(root), batch_key, origin)
        return checked, event


def _parse(body: bytes) -> Event:
    try:
        event = orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        raise EventRejected(NOT_JSON, f"the message body is not JSON: {exc}") from exc
    if not isinstance(event, dict):
        raise EventRejected(NOT_JSON, f"the message body is JSON but not an object ({type(event).__name__})")
    # A body that is not exactly what orjson writes for what it read (the bridge's own bodies are) may hold a
    # member twice, which orjson reads last-wins: read it again, member by member. Floats are refused everywhere
    # but in `data`, whose items the flow definition types (a float there is schema_invalid).
    if orjson.dumps(event) != body:
        _check_members(body)
    _refuse_floats([value for name, value in event.items() if name != "data"])
    return event


class _Ambiguous(Exception):
    pass


def _unique_members(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    members = dict(pairs)
    if len(members) != len(pairs):
        names = [name for name, _value in pairs]
        raise _Ambiguous(f"member {next(n for n in names if names.count(n) > 1)[:40]!r} appears twice in one object")
    return members


def _no_float(text: str) -> Any:
    raise _Ambiguous(f"the number {text[:40]} is not a whole number")


_STRICT = json.JSONDecoder(object_pairs_hook=_unique_members, parse_float=_no_float)


def _check_members(body: bytes) -> None:
    """Refuse what RFC 8785 and a first-wins parser would read differently from us: a duplicate member, a float."""
    try:
        _STRICT.decode(body.decode("utf-8"))
    except _Ambiguous as exc:
        raise EventRejected(JSON_AMBIGUOUS, f"the message body is ambiguous JSON: {exc}") from exc
    except ValueError as exc:  # JSON that orjson reads but Python's parser does not
        raise EventRejected(NOT_JSON, f"the message body is not JSON: {exc}") from exc


def _refuse_floats(values: list[Any]) -> None:
    stack = values
    while stack:
        value = stack.pop()
        kind = type(value)
        if kind is dict:
            stack.extend(value.values())
        elif kind is list:
            stack.extend(value)
        elif kind is float:
            raise EventRejected(JSON_AMBIGUOUS, f"the message body is ambiguous JSON: the number {value!r} is not a "
                                "whole number (RFC 8785 and other parsers may write it differently)")


def _text(event: Mapping[str, Any], name: str, pattern: re.Pattern[str] | None = None) -> str:
    value = event.get(name)
    if not isinstance(value, str) or not value:
        raise EventRejected(ENVELOPE_INVALID, f"event {event.get('id')}: attribute {name!r} must be a non-empty "
                            "string")
    if pattern is not None and not pattern.fullmatch(value):
        raise EventRejected(ENVELOPE_INVALID, f"event {event.get('id')}: attribute {name!r} is not a valid value")
    return value


def _batch_key(event: Event, definition: FlowDefinition) -> BatchKey:
    """The new-file key: sender from `source` (and `dtcfrom`, which must agree), roles, recipient, test flag."""
    source = event.get("source")
    sender = participant_of(source) if isinstance(source, str) else None
    if sender is None or not MPID.fullmatch(sender):
        raise EventRejected(ENVELOPE_INVALID, f"event {event.get('id')}: source must be urn:mpid:<MPID>")
    if event.get("dtcfrom", sender) != sender:
        raise EventRejected(ENVELOPE_INVALID, f"event {event.get('id')}: dtcfrom {event.get('dtcfrom')!r} is not "
                            f"the participant of source {event.get('source')!r}")
    return BatchKey(definition.reference, sender, _text(event, "dtcfromrole", ROLE_CODE),
                    _text(event, "dtcto", MPID), _text(event, "dtctorole", ROLE_CODE),
                    _text(event, "dtctestflag", _TEST_FLAG))


def _origin(event: Event, definition: FlowDefinition, share: Callable[[FileHeader], FileHeader]) -> Origin | None:
    """An event carries its source file's envelope when it has dtcindex, dtcflowcount and dtccreated."""
    if "dtcindex" not in event and "dtcflowcount" not in event:
        return None
    index, count = event.get("dtcindex"), event.get("dtcflowcount")
    if type(index) is not int or type(count) is not int or not 1 <= index <= count:
        raise EventRejected(ENVELOPE_INVALID, f"event {event.get('id')}: dtcindex {index!r} and dtcflowcount "
                            f"{count!r} must be whole numbers with 1 <= dtcindex <= dtcflowcount")
    try:
        header = header_of(event, definition)  # every attribute held to its DTC format
        completed, checksum = trailer_of(event, header)
    except EventError as exc:
        raise EventRejected(ENVELOPE_INVALID, str(exc)) from exc
    key = origin_key(header.from_participant, header.file_identifier, header.created, definition.reference)
    return Origin(key, index, count, share(header), completed, checksum,
                  tuple(event.get(name) for name in FILE_ATTRIBUTES))


def _check_dataschema(event: Event, expected: str) -> None:
    """`dataschema` may be absent (events stored before it was added still replay), but never name another
    schema than the type's."""
    named = event.get("dataschema", expected)
    if named != expected:
        raise EventRejected(SCHEMA_INVALID, f"event {event.get('id')}: dataschema {str(named)[:80]!r} is not "
                            f"{expected!r}, the schema of its type")


def _manifest(event: Event, event_id: str) -> ManifestNotice:
    _check_dataschema(event, MANIFEST_SCHEMA)
    data = event.get("data")
    if not isinstance(data, dict):
        raise EventRejected(MANIFEST_INVALID, f"manifest {event_id}: data must be an object")
    _refuse_floats([data])
    fields = {}
    for name in ("from_participant", "first_event_id", "sha256"):
        value = data.get(name)
        if not isinstance(value, str) or not value:
            raise EventRejected(MANIFEST_INVALID, f"manifest {event_id}: data.{name} must be a non-empty string")
        fields[name] = value
    if not _SHA256.fullmatch(fields["sha256"]):
        raise EventRejected(MANIFEST_INVALID, f"manifest {event_id}: data.sha256 is not a lower-case SHA-256")
    if participant_of(str(event.get("source", ""))) != fields["from_participant"]:
        raise EventRejected(MANIFEST_INVALID, f"manifest {event_id}: source does not name data.from_participant")
    return ManifestNotice(event_id, str(event["source"]), fields["first_event_id"], fields["sha256"])
