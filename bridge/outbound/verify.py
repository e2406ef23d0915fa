"""Stage 1 of the outbound direction: message bytes -> a verified event (or a manifest), or a typed rejection.

Nothing reaches a file without passing, in this order: JSON object -> signature (trust store) -> known flow ->
data fits the flow definition -> envelope attributes usable in a file header. The order is cheap-and-safe first:
an unsigned or untrusted message is not even looked at further. Each failure is one stable machine code
(`EventRejected.code`) plus words for people; the loop dead-letters the message with both.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import orjson

from bridge.dtn.definitions import DefinitionSet, FlowDefinition
from bridge.dtn.model import GroupInstance
from bridge.errors import EventError, SignatureError
from bridge.events.envelope import Event, definition_for, event_to_instance, header_of, participant_of
from bridge.events.manifest import MANIFEST_TYPE
from bridge.signing import TrustStore

# Reject codes of this module (signature failures use SignatureError.reason, see bridge/signing/reasons.py).
NOT_JSON = "not_json"
UNKNOWN_FLOW = "unknown_flow"
SCHEMA_INVALID = "schema_invalid"
ENVELOPE_INVALID = "envelope_invalid"
MANIFEST_INVALID = "manifest_invalid"

_MPID = re.compile(r"[A-Z0-9]{4}")
_ROLE = re.compile(r"[A-Z0-9]")
_TEST_FLAG = re.compile(r"[A-Z0-9]{1,4}")
_SHA256 = re.compile(r"[0-9a-f]{64}")
_UNSAFE = re.compile(r"[|\r\n]")  # would break a DTN line


class EventRejected(EventError):
    """The message cannot be written to a DTN file; `code` is the stable machine reason (dead-letter header)."""

    def __init__(self, code: str, message: str) -> None:
        self.code = code
        super().__init__(message)


@dataclass(frozen=True, slots=True)
class BatchKey:
    """Which new file an event may share: one file per flow version, sender, recipient (with roles), test flag."""

    flow: str  # flow reference, e.g. D0010002
    from_participant: str
    from_role: str
    to_participant: str
    to_role: str
    test_flag: str


@dataclass(frozen=True, slots=True)
class Origin:
    """The source file an event came from (when it carries the whole original envelope)."""

    key: str  # "<from>|<file identifier>|<created>|<flow reference>", also the ledger's `origin`
    index: int  # dtcindex, 1-based
    flow_count: int  # dtcflowcount


@dataclass(frozen=True, slots=True)
class VerifiedEvent:
    """An event that passed every check, with what batching and writing need already worked out."""

    id: str
    event: Event
    definition: FlowDefinition
    root: GroupInstance  # the flow instance, rebuilt and checked against the definition
    batch_key: BatchKey | None  # None: no test data flag, so it can only be written back within its source file
    origin: Origin | None  # None: a new event, written into a batched file


@dataclass(frozen=True, slots=True)
class ManifestNotice:
    """A verified `uk.dtc.file.received` manifest: the SHA-256 its source file must reproduce to."""

    id: str
    first_event_id: str  # the source file's dtcindex 1 event: how the manifest finds the reproduced file
    sha256: str


def origin_key(from_participant: str, file_identifier: str, created: str, flow_reference: str) -> str:
    """The ledger key of a source file: the manifest and the events of one file compute the same one."""
    return f"{from_participant}|{file_identifier}|{created}|{flow_reference}"


class EventVerifier:
    """Verifies message bodies against the trust store and the flow definitions (stateless, thread-safe)."""

    def __init__(self, definitions: DefinitionSet, trust: TrustStore) -> None:
        self.definitions = definitions
        self.trust = trust

    def __call__(self, body: bytes) -> VerifiedEvent | ManifestNotice:
        """Verify one message body; raise EventRejected with the reason."""
        event = _parse(body)
        try:
            self.trust.verify(event)
        except SignatureError as exc:
            raise EventRejected(exc.reason, f"signature: {exc}") from exc
        event_id = event.get("id")
        if not isinstance(event_id, str) or not event_id:
            raise EventRejected(ENVELOPE_INVALID, "attribute 'id' must be a non-empty string")
        if event.get("type") == MANIFEST_TYPE:
            return _manifest(event, event_id)
        try:
            definition = definition_for(event, self.definitions)
        except EventError as exc:
            raise EventRejected(UNKNOWN_FLOW, str(exc)) from exc
        try:
            root = event_to_instance(event, definition)
        except EventError as exc:
            raise EventRejected(SCHEMA_INVALID, str(exc)) from exc
        if b"\\n" in body or b"\\r" in body or b"\\u000" in body:  # JSON escapes of a line break: look closer
            _check_values(root, event_id)
        origin = _origin(event, definition)
        try:
            batch_key = _batch_key(event, definition)
        except EventRejected:
            if origin is None:
                raise
            batch_key = None  # reproducible within its source file only
        return VerifiedEvent(event_id, event, definition, root, batch_key, origin)


def _parse(body: bytes) -> Event:
    try:
        event = orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        raise EventRejected(NOT_JSON, f"the message body is not JSON: {exc}") from exc
    if not isinstance(event, dict):
        raise EventRejected(NOT_JSON, f"the message body is JSON but not an object ({type(event).__name__})")
    return event


def _check_values(root: GroupInstance, event_id: str) -> None:
    """CHAR items are checked for '|' by the format; a line break would split a DTN line, so refuse it too."""
    stack = [root]
    while stack:
        group = stack.pop()
        for item, text in zip(group.definition.items, group.values, strict=True):
            if text and _UNSAFE.search(text):
                raise EventRejected(SCHEMA_INVALID, f"event {event_id}: item {item.key} of group "
                                    f"{group.definition.code} contains a line break or '|'")
        stack.extend(group.children)


def _text(event: Mapping[str, Any], name: str, pattern: re.Pattern[str] | None = None) -> str:
    value = event.get(name)
    if not isinstance(value, str) or not value:
        raise EventRejected(ENVELOPE_INVALID, f"event {event.get('id')}: attribute {name!r} must be a non-empty "
                            "string")
    if _UNSAFE.search(value) or (pattern is not None and not pattern.fullmatch(value)):
        raise EventRejected(ENVELOPE_INVALID, f"event {event.get('id')}: attribute {name!r} is not a valid value")
    return value


def _batch_key(event: Event, definition: FlowDefinition) -> BatchKey:
    """The new-file key: sender from `source` (and `dtcfrom`, which must agree), roles, recipient, test flag."""
    source = event.get("source")
    sender = participant_of(source) if isinstance(source, str) else None
    if sender is None or not _MPID.fullmatch(sender):
        raise EventRejected(ENVELOPE_INVALID, f"event {event.get('id')}: source must be urn:mpid:<MPID>")
    if event.get("dtcfrom", sender) != sender:
        raise EventRejected(ENVELOPE_INVALID, f"event {event.get('id')}: dtcfrom {event.get('dtcfrom')!r} is not "
                            f"the participant of source {event.get('source')!r}")
    return BatchKey(definition.reference, sender, _text(event, "dtcfromrole", _ROLE), _text(event, "dtcto", _MPID),
                    _text(event, "dtctorole", _ROLE), _text(event, "dtctestflag", _TEST_FLAG))


def _origin(event: Event, definition: FlowDefinition) -> Origin | None:
    """An event carries its source file's envelope when it has dtcindex, dtcflowcount and dtccreated."""
    if "dtcindex" not in event and "dtcflowcount" not in event:
        return None
    index, count = event.get("dtcindex"), event.get("dtcflowcount")
    if type(index) is not int or type(count) is not int or not 1 <= index <= count:
        raise EventRejected(ENVELOPE_INVALID, f"event {event.get('id')}: dtcindex {index!r} and dtcflowcount "
                            f"{count!r} must be whole numbers with 1 <= dtcindex <= dtcflowcount")
    try:
        header = header_of(event, definition)
    except EventError as exc:
        raise EventRejected(ENVELOPE_INVALID, str(exc)) from exc
    for name in ("dtcfileid", "dtccreated", "dtccompleted", "dtcchecksum", "dtcsendapp", "dtcrecvapp",
                 "dtcbroadcast", "dtcfromrole", "dtctorole", "dtcto", "dtctestflag"):
        value = event.get(name)
        if value is not None and (not isinstance(value, str) or _UNSAFE.search(value)):
            raise EventRejected(ENVELOPE_INVALID, f"event {event.get('id')}: attribute {name!r} is not a valid "
                                "value")
    key = origin_key(header.from_participant, header.file_identifier, header.created, definition.reference)
    return Origin(key, index, count)


def _manifest(event: Event, event_id: str) -> ManifestNotice:
    data = event.get("data")
    if not isinstance(data, dict):
        raise EventRejected(MANIFEST_INVALID, f"manifest {event_id}: data must be an object")
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
    return ManifestNotice(event_id, fields["first_event_id"], fields["sha256"])
