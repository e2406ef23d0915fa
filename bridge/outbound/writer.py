"""Stage 3: a ready group of checked events -> one durable DTN file in the outbound folder, exactly once.

The protocol between the ledger and the filesystem (docs/outbound.md, "Exactly once"):

1. render the file in memory (a new file first takes the next number of its sender's durable counter);
2. one ledger transaction records the file as `pending` (final name, hidden temporary name, SHA-256) together
   with all its event ids;
3. write the hidden `.<name>.<random>.tmp`, fsync it, hard-link it to the final name (never overwriting), remove
   the temporary name, fsync the folder;
4. mark the file `written`; only then does the loop ack the deliveries.

`recover()` at start settles every `pending` file: if the final name holds exactly the recorded bytes the file is
finished, otherwise the temporary file is removed and the record and its event ids are rolled back, so the
redelivered messages are written again. A redelivered event whose id is recorded is acked without writing.

In an active/standby pair (`shared`, outbound.shared_state) each file is also recorded in the pair's shared folder,
under the pair's lock held from the identifier to the link: pending before step 3, done after it; and before
writing, the files the other daemon recorded are taken into this daemon's ledger, so their events count as written
(docs/operations.md, "An active/standby pair").
"""

from __future__ import annotations

import hashlib
import io
import secrets
from collections.abc import Callable, Collection, Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from zoneinfo import ZoneInfo

import structlog

from bridge.config import OutboundConfig
from bridge.dtn.definitions import DefinitionSet
from bridge.dtn.model import FileHeader
from bridge.dtn.names import candidate_names, plain_name_problem
from bridge.dtn.reader import FlowFileReader
from bridge.dtn.writer import FlowFileWriter
from bridge.errors import EventError, StorageError
from bridge.outbound.batching import Held, ReadyFile
from bridge.outbound.check import EventRejected, ManifestNotice
from bridge.ports import EventKey, OutboundFileDraft, OutboundFileRecord, OutboundLedger, Outbox, PairSession, PairState

log = structlog.get_logger("dtn_bridge.outbound")
FILE_INVALID = "file_invalid"
FILE_NAME_INVALID = "file_name_invalid"
_LONDON = ZoneInfo("Europe/London")
_IDENTIFIER_MODULUS = 10**10  # J1064 File Identifier: 10 characters


@dataclass(frozen=True, slots=True)
class Recovery:
    """What `recover()` did: files finished (already in place) and files rolled back (to be written again)."""

    finished: int
    rolled_back: int


@dataclass(frozen=True, slots=True)
class _Rendered:
    data: bytes
    header: FileHeader
    kind: str
    origin: str | None


def dtn_timestamp(moment: datetime) -> str:
    """An aware time as a DTN timestamp: UK local time, ccyymmddhhmmss."""
    return moment.astimezone(_LONDON).strftime("%Y%m%d%H%M%S")


class OutboundWriter:
    """Writes the files that the DTN gateway sends, from checked events. One writer per outbound folder."""

    def __init__(self, definitions: DefinitionSet, ledger: OutboundLedger, config: OutboundConfig, *, outbox: Outbox,
                 clock: Callable[[], datetime] = lambda: datetime.now(UTC),
                 checks: Mapping[str, str] | None = None, shared: PairState | None = None) -> None:
        """`outbox`: the outbound folder (`config.folder`) the files go to; `checks`: the severities of the named
        checks, as for inbound files (`checks:` in the config); `shared`: the state shared with the other daemon of
        a pair (None: this daemon writes alone)."""
        self.shared = shared
        self._session: PairSession | None = None
        self._raised: dict[str, int] = {}  # the pair's identifiers this daemon's ledger is known to be at
        self.ledger = ledger
        self.config = config
        self.outbox = outbox
        self.folder = outbox.folder
        self.clock = clock
        self._reader = FlowFileReader(definitions, checks=checks)

    def written(self, keys: Collection[EventKey], *, refresh: bool = False) -> set[EventKey]:
        """Which of these events, by (source, id), are in a file already (redeliveries or duplicates). `refresh`
        (some are redelivered): in a pair, first take in what the other daemon wrote."""
        if refresh and keys and self.shared is not None:
            with self.shared.session() as session:
                self._take_in(session)
        return self.ledger.seen_events(keys) if keys else set()

    def _take_in(self, session: PairSession) -> None:
        """The files the pair's other daemon wrote: their events are written, for this daemon's ledger too."""
        for shared in session.news():
            self.ledger.mark_events_written(shared.events, self.folder / shared.name)
        for sender, number in session.identifiers().items():  # so that, alone again, it never goes back
            if self._raised.get(sender, 0) < number:
                self.ledger.raise_file_identifier(sender, number)
                self._raised[sender] = number

    # ------------------------------------------------------------------------------------------------ recovery

    def recover(self) -> Recovery:
        """Finish or roll back the files a crash left `pending` (call at start, before consuming); in a pair, then
        take in what the other daemon wrote."""
        recovery = self._recover()
        if self.shared is not None:
            with self.shared.session() as session:
                self._take_in(session)
        return recovery

    def _recover(self) -> Recovery:
        finished = rolled_back = 0
        for record in self.ledger.pending_outbound_files():
            try:
                done = self._settle(record)
            except (StorageError, ValueError) as exc:
                # A row that cannot be completed must not stop every start: its events are written again.
                log.error("outbound_recovery_abandoned", path=repr(str(record.path)), events=record.events,
                          error=str(exc))
                self._give_up(record.id, record.tmp_path)
                done = False
            finished += done
            rolled_back += not done
        if finished or rolled_back:
            self.outbox.sync()
        return Recovery(finished, rolled_back)

    def _settle(self, record: OutboundFileRecord) -> bool:
        """Finish one pending file (True) when its final name holds the recorded bytes, else roll it back."""
        for path in (record.path, record.tmp_path):
            if path.parent != self.folder:
                raise StorageError(f"the recorded name {str(path)[:80]!r} is not a name in {self.folder}")
        done = self.outbox.sha256(record.path) == record.sha256
        self.outbox.remove(record.tmp_path)
        if done:
            self.ledger.finish_outbound_file(record.id)
        else:
            self.ledger.abandon_outbound_file(record.id)
        log.info("outbound_recovered", outcome="finished" if done else "rolled_back", path=str(record.path),
                 events=record.events)
        return done

    # ------------------------------------------------------------------------------------------------- writing

    def write(self, ready: ReadyFile) -> OutboundFileRecord | None:
        """Write one file of `ready.items` durably; None when every event was already written.

        Raises EventRejected (`file_invalid`) when new events break a per-file rule of their flow (the caller
        dead-letters them), EventError when an original set cannot be rendered as its source file (the caller
        batches it instead), StorageError when the folder or the ledger fails (nothing is acked; recovery settles it).
        """
        if self.shared is None:
            return self._write(ready)
        with self.shared.session() as session:  # the other daemon of the pair waits: one writer at a time
            self._session = session
            try:
                self._take_in(session)
                return self._write(ready)
            finally:
                self._session = None

    def _write(self, ready: ReadyFile) -> OutboundFileRecord | None:
        items = self._unwritten(ready.items)
        if not items:
            return None
        if ready.kind == "original" and len(items) == len(ready.items):
            rendered = self._render_original(items)
        else:
            rendered = self._render_batch(items)
        record = self._place(rendered, [held.event.key for held in items])
        log.info("outbound_file_written", kind=record.kind, reason=ready.reason, path=str(record.path),
                 flow=record.flow, sender=record.from_participant, recipient=record.to_participant,
                 file_identifier=record.file_identifier, events=record.events, bytes=record.size)
        if rendered.origin is not None:
            self._check_manifest(record, items[0].event.key)
        return record

    def _unwritten(self, items: Iterable[Held]) -> list[Held]:
        listed = list(items)
        seen = self.ledger.seen_events(held.event.key for held in listed)
        return [held for held in listed if held.event.key not in seen] if seen else listed

    def _render_original(self, items: list[Held]) -> _Rendered:
        """The source file, byte for byte: its own identifier and timestamps, instances in dtcindex order."""
        first = items[0].event.origin
        assert first is not None
        if any(held.event.origin is None or held.event.origin.attributes != first.attributes for held in items):
            raise EventError(f"the events of source file {first.key} differ in a file attribute (type, source, "
                             "dtc...): events of several files cannot make one file")
        writer = FlowFileWriter(first.header, dtn_checksum=first.dtn_checksum)
        lines = [writer.header()]
        for held in items:
            lines.extend(writer.records(held.event.records))
        lines.append(writer.trailer(first.completed))
        return _Rendered("".join(lines).encode("utf-8"), first.header, "original", first.key)

    def _render_batch(self, items: list[Held]) -> _Rendered:
        """A new ZHV file: the next identifier of the sender's counter, creation and completion time now."""
        key = items[0].event.batch_key
        if key is None or any(held.event.batch_key != key for held in items):
            raise EventError("these events share no new-file key (flow, participants, roles, test data flag)")
        number = self._next_identifier(key.from_participant) % _IDENTIFIER_MODULUS
        header = FileHeader(layout="ZHV", file_identifier=f"{number:010d}", flow_reference=key.flow,
                            from_role=key.from_role, from_participant=key.from_participant, to_role=key.to_role,
                            to_participant=key.to_participant, created=dtn_timestamp(self.clock()),
                            test_data_flag=key.test_flag)
        writer = FlowFileWriter(header)
        lines = [writer.header()]
        for held in items:
            lines.extend(writer.records(held.event.records))
        lines.append(writer.trailer(dtn_timestamp(self.clock())))
        text = "".join(lines)
        self._check_file(text)
        return _Rendered(text.encode("utf-8"), header, "batch", None)

    def _next_identifier(self, sender: str) -> int:
        """The next number of the sender's counter: this daemon's ledger's, or in a pair the pair's (the ledger's
        follows it, so the daemon alone later goes on from there)."""
        number = self.ledger.allocate_file_identifier(sender)
        if self._session is None:
            return number
        number = self._session.next_identifier(sender, number)
        self.ledger.raise_file_identifier(sender, number)
        return number

    def _check_file(self, text: str) -> None:
        """Every instance fits its flow, but some flows also bound groups per *file* (D0030: one SUP): a new
        file is read back with the same reader as inbound files and refused whole if it breaks such a rule."""
        checked = self._reader.read(io.StringIO(text, newline="")).check()
        if not checked.ok:
            defects = checked.describe_defects()
            more = f" (and {len(defects) - 5} more)" if len(defects) > 5 else ""
            raise EventRejected(FILE_INVALID, f"these events do not make a valid {checked.flow_reference} file: "
                                + "; ".join(defects[:5]) + more)

    def file_name(self, header: FileHeader) -> str:
        """The configured name pattern filled in for this header: one plain path part of bounded length, or
        EventRejected (the events are dead-lettered, not retried as a storage fault)."""
        name = self.config.name_pattern.format(
            flow=header.flow, version=header.version, from_participant=header.from_participant,
            from_role=header.from_role, to_participant=header.to_participant, to_role=header.to_role,
            file_identifier=header.file_identifier)
        problem = plain_name_problem(name)
        if problem:
            raise EventRejected(FILE_NAME_INVALID, f"the file name {name[:80]!r} {problem}")
        return name

    def _place(self, rendered: _Rendered, keys: list[EventKey]) -> OutboundFileRecord:
        """Steps 2-4 of the protocol, trying `name`, `name.1`, ... until a free final name takes the link."""
        header = rendered.header
        digest = hashlib.sha256(rendered.data).hexdigest()
        for name in candidate_names(self.file_name(header)):
            path = self.folder / name
            if self.outbox.taken(path):
                continue
            tmp = self.folder / f".{name}.{secrets.token_hex(6)}.tmp"
            draft = OutboundFileDraft(
                kind=rendered.kind, path=path, tmp_path=tmp, sha256=digest, size=len(rendered.data),
                flow=header.flow_reference, from_participant=header.from_participant,
                to_participant=header.to_participant, file_identifier=header.file_identifier,
                test_flag=header.test_data_flag, origin=rendered.origin)
            file_id = self.ledger.begin_outbound_file(draft, keys)
            record_number = self._shared_begin(name, tmp, digest, keys, file_id)
            linked = self._put(rendered.data, tmp, path, file_id)  # failing, a pending record is settled later
            self._shared_end(record_number, linked=linked)
            if not linked:
                continue  # the name was taken meanwhile: rolled back, try the next one
            self.ledger.finish_outbound_file(file_id)
            record = self.ledger.outbound_file(file_id)
            assert record is not None
            return record
        raise AssertionError("unreachable")  # pragma: no cover - candidate_names is infinite

    def _shared_begin(self, name: str, tmp: Path, digest: str, keys: list[EventKey], file_id: int) -> int | None:
        """In a pair: record the file pending in the shared folder before it is linked (None alone)."""
        if self._session is None:
            return None
        try:
            return self._session.begin(name, tmp.name, digest, keys)
        except BaseException:
            self.ledger.abandon_outbound_file(file_id)
            raise

    def _shared_end(self, number: int | None, *, linked: bool) -> None:
        """In a pair: the recorded file is in place (done) or is not (forgotten). A record left pending (this or
        the write failed) is settled by the outbound folder when the pair's lock is next taken."""
        if self._session is None or number is None:
            return
        if linked:
            self._session.finish(number)
        else:
            self._session.drop(number)

    def _put(self, data: bytes, tmp: Path, path: Path, file_id: int) -> bool:
        """Write `tmp`, fsync, link to `path`, unlink `tmp`, fsync the folder. False (rolled back) if `path` exists.

        On an error before the link the record is rolled back (even when removing `tmp` fails too); after it, the
        file is in place and the record stays pending for recover(), which finishes it.
        """
        linked = False
        try:
            self.outbox.write_synced(tmp, data)
            linked = self.outbox.link(tmp, path)  # never replaces a file; False if the name is taken
            self.outbox.remove(tmp)
            if linked:
                self.outbox.sync()
        except BaseException:
            if not linked:
                self._give_up(file_id, tmp)
            raise
        if not linked:
            self.ledger.abandon_outbound_file(file_id)
        return linked

    def _give_up(self, file_id: int, tmp: Path) -> None:
        """Roll back a file that never reached its final name: its events may be written again. Removing its
        temporary file is best effort (recovery and the gateway ignore hidden names); the rollback is not."""
        try:
            self.outbox.remove(tmp)
        except (StorageError, ValueError) as exc:
            log.warning("outbound_tmp_left", path=repr(str(tmp)), error=str(exc))
        finally:
            self.ledger.abandon_outbound_file(file_id)

    # ----------------------------------------------------------------------------------------------- manifests

    def note_manifest(self, notice: ManifestNotice) -> bool | None:
        """Remember a manifest; if its source file was already reproduced, compare now. Returns the match or None."""
        self.ledger.record_outbound_manifest(notice.first_event, notice.id, notice.sha256)
        record = self.ledger.find_outbound_by_event(notice.first_event)
        if record is None:
            return None  # checked when the file is written
        if record.kind != "original" or record.state != "written":
            log.info("outbound_manifest_unchecked", reason="the source file was not reproduced whole",
                     path=str(record.path))
            return None
        return self._check_manifest(record, notice.first_event)

    def _check_manifest(self, record: OutboundFileRecord, first_event: EventKey) -> bool | None:
        expected = self.ledger.outbound_manifest_sha256(first_event)
        if expected is None:
            return None
        match = expected == record.sha256
        self.ledger.record_manifest_check(record.id, expected, match)
        if match:
            log.info("outbound_manifest_checked", match=True, path=str(record.path))
        else:
            log.warning("outbound_manifest_checked", match=False, path=str(record.path), expected=expected,
                        written=record.sha256)
        return match
