"""The inbound chain for one claimed file: check -> (quarantine | build events -> sign -> publish -> manifest ->
archive), with every step recorded in the ledger so that a crash at any moment resumes without loss.

    claim -> hash -> ledger.claimed -> [duplicate? archive] -> check (whole file) -> defects? quarantine + report
          -> build (events, governance, canonical form, signature: inbound/build.py, here or in a worker process)
          -> publish (windowed confirms) -> manifest -> ledger.published -> archive

Nothing of a defective file is published: the first pass reads it to its end before the first publish. Event ids
are deterministic, so a file resumed after a crash republishes the same ids (consumers de-duplicate by id).
"""

from __future__ import annotations

import contextlib
import traceback
from collections.abc import Callable, Generator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Literal

import structlog

from bridge.dtn.formats import DEFAULT_MAX_LINE_BYTES
from bridge.dtn.model import Defect
from bridge.dtn.reader import FileParse, FlowFileReader
from bridge.dtn.valid import ValidFile
from bridge.errors import FlowFileError, StorageError
from bridge.events.manifest import build_manifest, manifest_routing_key
from bridge.inbound.build import BuiltMessage
from bridge.inbound.flowfile import check_file, file_events
from bridge.ports import Claim, InboundLedger, OutgoingMessage, Publisher, PublishResult, Spool
from bridge.rules import Decision, FileFacts, RuleSet, decide_inbound_file, route_event
from bridge.signing import canonicalize

Outcome = Literal["archived", "quarantined", "duplicate", "shadowed"]
log = structlog.get_logger("dtn_bridge.inbound")

#: The slowest the checksum and the streaming passes over a file go without being hung (bytes per second): the
#: watchdog's allowance for reading a big file (a 1 GiB file: about nine minutes).
READ_FLOOR_BYTES_PER_SECOND = 2_000_000
MANIFEST_TIMEOUT = 60.0  # seconds for the manifest's confirm (publish_all's own default)


# (file, first pass, SHA-256) -> messages; a generator, so that a publisher that stops early can close it
BuildStage = Callable[[Path, ValidFile, str], Generator[BuiltMessage, None, None]]


@dataclass(frozen=True, slots=True)
class FileOutcome:
    """How one file ended, for the canonical log line and the tests."""

    outcome: Outcome
    ledger_id: int
    final_path: Path
    events: int = 0
    reason: str | None = None
    rule: str | None = None  # why a file was quarantined: the first defect's rule, or the governance rule


def _first_pass(claim: Claim, spool: Spool, reader: FlowFileReader, max_line_bytes: int) -> tuple[str, FileParse]:
    """The file's SHA-256, then its first pass (in this order, as `InboundPipeline.process` takes them)."""
    return spool.sha256(claim), check_file(claim.path, reader, max_line_bytes)


def defect_report(claim: Claim, sha256: str, size: int, checked: FileParse | None, reason: str,
                  defects: list[Defect] | None = None, when: datetime | None = None) -> dict[str, Any]:
    """The `.error.json` written beside a quarantined file: every defect, located, in words and as fields."""
    flow = checked.flow_reference if checked else None
    listed = list(defects if defects is not None else (checked.defects if checked else []))
    return {
        "file": claim.original_name,
        "sha256": sha256,
        "size": size,
        "flow": flow,
        "reason": reason,
        "rejected_at": (when or datetime.now(UTC)).isoformat(),
        "defects": listed_defects(listed, flow),
        "defects_truncated": bool(checked and checked.defects_truncated),
    }


def listed_defects(defects: list[Defect], flow: str | None) -> list[dict[str, Any]]:
    """Defects as a report or a manifest lists them: located, in words and as fields."""
    return [{**defect.as_dict(), "text": defect.describe(flow)} for defect in defects]


class InboundPipeline:
    """Processes one claimed file to its end: archived with its events confirmed, or quarantined with a report."""

    def __init__(self, *, reader: FlowFileReader, build: BuildStage, sign: Callable[[bytes], bytes],
                 publisher: Publisher, ledger: InboundLedger, spool: Spool, rules: RuleSet, duplicates: str = "skip",
                 max_file_bytes: int = 1 << 30, max_line_bytes: int = DEFAULT_MAX_LINE_BYTES, shadow: bool = False,
                 on_decision: Callable[[Decision, int], None] = lambda _decision, _count: None,
                 on_published: Callable[[PublishResult], None] = lambda _result: None,
                 allow: Callable[[float], None] = lambda _seconds: None,
                 clock: Callable[[], datetime] = lambda: datetime.now(UTC)) -> None:
        """`build` yields a valid file's messages, signed; `sign` signs the file's manifest (canonical bytes -> the
        signed JSON to publish). `shadow`: do everything but publish (events are still built and signed, so the
        report is real). `on_decision` sees every governance decision (with the number of events in a row that had
        it) and `on_published` every confirmed batch (metrics). `allow(seconds)` announces a step that may take that
        long without being hung (the systemd watchdog's `Heartbeat.allow`): reading a big file, waiting for
        confirms."""
        self.reader = reader
        self.build = build
        self.sign = sign
        self.publisher = publisher
        self.ledger = ledger
        self.spool = spool
        self.duplicates = duplicates
        self.max_file_bytes = max_file_bytes
        self.max_line_bytes = max_line_bytes
        self.shadow = shadow
        self.rules = rules
        self.on_decision = on_decision
        self.on_published = on_published
        self.allow = allow
        self.clock = clock
        self._ahead: tuple[Path, Future[tuple[str, FileParse]]] | None = None
        self._checker: ThreadPoolExecutor | None = None

    def check_ahead(self, claim: Claim) -> None:
        """Start the first pass of the file to process next, on a thread of its own, while this one publishes: the
        check is the daemon's largest cost per event, and done ahead, the build workers need not wait for it."""
        try:
            if self.spool.unsafe(claim) is not None:
                return  # never opened: `process` sets it aside
        except StorageError:
            return  # gone or not statable: `process` says so, where errors count
        if self._checker is None:
            self._checker = ThreadPoolExecutor(1, thread_name_prefix="check-ahead")
        self._ahead = (claim.path, self._checker.submit(_first_pass, claim, self.spool, self.reader,
                                                          self.max_line_bytes))

    def close(self) -> None:
        """End the check-ahead thread (a check in progress is finished and dropped)."""
        if self._checker is not None:
            self._checker.shutdown(wait=True, cancel_futures=True)
            self._checker = None
        self._ahead = None

    def _checked_ahead(self, claim: Claim, sha256: str) -> FileParse | None:
        """The first pass done ahead for this claim, if it was of these very bytes (SHA-256 taken before each)."""
        ahead, self._ahead = self._ahead, None
        if ahead is None or ahead[0] != claim.path:
            return None
        try:
            digest, checked = ahead[1].result()
        except Exception:  # noqa: BLE001  # any trouble ahead: the file is checked again, here, where errors count
            return None
        return checked if digest == sha256 else None

    def process(self, claim: Claim) -> FileOutcome:
        """Take the file to its end. Broker errors propagate (the file stays claimed and is retried)."""
        record = self.ledger.get_by_claim_path(str(claim.path))
        # A claim the ledger knows with its SHA-256 was found safe before (now it may hold our own archive link); one
        # without (sha256 empty) was being set aside when the daemon stopped.
        if record is None or not record.sha256:
            unsafe = self.spool.unsafe(claim)
            if unsafe is not None:
                return self._set_aside(claim, unsafe, record.id if record else None)
        size = claim.path.stat().st_size
        self.allow(size / READ_FLOOR_BYTES_PER_SECOND)  # the checksum and the passes over a big file
        sha256 = self.spool.sha256(claim)
        checked_ahead = self._checked_ahead(claim, sha256)
        ledger_id = record.id if record else self.ledger.record_claimed(sha256, claim.original_name,
                                                                         str(claim.path), size)
        structlog.contextvars.bind_contextvars(file=claim.original_name, ledger_id=ledger_id)
        try:
            if record is not None and record.state == "published" and record.sha256 == sha256:
                # Every event and the manifest were confirmed, but the archive move failed (a full disk) or a crash
                # came first: only the move is left. (The ledger refuses published -> parsed, so going through
                # _publish again would fail on every retry and hold the claim for ever.)
                final = self.spool.archive(claim, self.clock().date())
                self.ledger.record_archived(ledger_id, str(final))
                log.info("file_settled", outcome="archived", flow=record.flow, events=record.events, resumed=True,
                         path=str(final))
                return FileOutcome("archived", ledger_id, final, events=record.events or 0)
            if size > self.max_file_bytes:
                reason = f"the file is {size} bytes, more than inbound.max_file_bytes ({self.max_file_bytes})"
                too_big = Defect("max-file-bytes", reason)
                return self._quarantine(claim, ledger_id, defect_report(claim, sha256, size, None, reason,
                                                                        [too_big], self.clock()), reason)
            previous = self.ledger.find_completed_by_sha256(sha256)
            if previous is not None and previous.id != ledger_id and self.duplicates == "skip":
                final = self.spool.archive(claim, self.clock().date())
                self.ledger.record_archived(ledger_id, str(final))
                log.info("file_settled", outcome="duplicate", duplicate_of=previous.id, path=str(final))
                return FileOutcome("duplicate", ledger_id, final, reason=f"same content as ledger #{previous.id}")
            checked = (checked_ahead if checked_ahead is not None
                       else check_file(claim.path, self.reader, self.max_line_bytes))
            if not checked.ok:
                reason = checked.describe_defects()[0]
                report = defect_report(claim, sha256, size, checked, reason, when=self.clock())
                return self._quarantine(claim, ledger_id, report, reason,
                                        stored=checked.defects[0].locate(checked.flow_reference))
            if checked.warnings:  # checks set to `warn`: the file goes on, the defects are in its manifest
                log.warning("file_check_warnings", warnings=[warning.locate(checked.flow_reference)
                                                             for warning in checked.warnings],
                            truncated=checked.warnings_truncated)
            if not checked.flow_count:  # valid where every level-1 group is optional, but nothing to publish
                reason = "the file holds no flow instance: there is no event to publish"
                report = defect_report(claim, sha256, size, checked, reason, [Defect("no-instances", reason)],
                                       self.clock())
                return self._quarantine(claim, ledger_id, report, reason)
            refusal = self._govern(claim, checked, size, sha256)
            if refusal is not None:
                reason = f"governance rule {refusal.rule}: {refusal.reason}"
                report = defect_report(claim, sha256, size, checked, reason, [Defect(refusal.rule, refusal.reason)],
                                       self.clock())
                return self._quarantine(claim, ledger_id, report, reason)
            return self._publish(claim, ledger_id, checked, sha256, size)
        except FlowFileError as exc:
            # Changed between the passes (a writer still had it open): what the first pass checked is gone. Some of
            # its events may have been confirmed already; their ids say which bytes they came from.
            reason = str(exc)
            defects = [d for d in exc.defects if isinstance(d, Defect)] or [Defect("file-changed", reason)]
            return self._quarantine(claim, ledger_id, defect_report(claim, sha256, size, None, reason, defects,
                                                                    self.clock()), reason)
        except (OSError, ValueError, KeyError, TypeError, AssertionError, RecursionError, RuntimeError) as exc:
            if isinstance(exc, OSError) and not claim.path.exists():
                raise
            # A bug or an unreadable file must not loop forever: quarantine it with the error, loudly.
            reason = f"internal error while processing: {type(exc).__name__}: {exc}"
            log.error("file_internal_error", error=reason, traceback=traceback.format_exc())
            return self._quarantine(claim, ledger_id, defect_report(claim, sha256, size, None, reason,
                                                                    [Defect("internal-error", reason)],
                                                                    self.clock()), reason,
                                    stored=f"internal error while processing: {type(exc).__name__}")
        finally:
            structlog.contextvars.unbind_contextvars("file", "ledger_id")

    def _set_aside(self, claim: Claim, reason: str, ledger_id: int | None) -> FileOutcome:
        """Quarantine a claimed entry that must not be opened (see Spool.unsafe), with a report and a ledger row; its
        content is never read, so it has no SHA-256 (recorded as empty)."""
        size = claim.path.lstat().st_size
        if ledger_id is None:
            ledger_id = self.ledger.record_claimed("", claim.original_name, str(claim.path), size)
        report = defect_report(claim, "", size, None, reason, [Defect("unsafe-file", reason)], self.clock())
        final = self.spool.set_aside(claim, report)
        self.ledger.record_quarantined(ledger_id, str(final), reason)
        log.warning("file_settled", outcome="quarantined", first_defect=f"unsafe-file: {reason}", path=str(final),
                    file=claim.original_name)
        return FileOutcome("quarantined", ledger_id, final, reason=reason, rule="unsafe-file")

    def _govern(self, claim: Claim, checked: FileParse, size: int, sha256: str) -> Decision | None:
        """The governance rules on the whole file (and, when an event size limit is set, on every event, before
        anything is published); the refusing decision, or None."""
        assert checked.header is not None
        decision = decide_inbound_file(FileFacts.from_header(checked.header, size=size,
                                                             flow_count=checked.flow_count), self.rules)
        self.on_decision(decision, 1)
        if not decision.accepted:
            return decision
        if self.rules.limits.max_event_bytes is not None:
            for event in file_events(claim.path, self.reader, checked, sha256):
                event_decision = route_event(event, "inbound", self.rules)
                if not event_decision.accepted:
                    self.on_decision(event_decision, 1)
                    return event_decision
        return None

    def _quarantine(self, claim: Claim, ledger_id: int, report: dict[str, Any], reason: str,
                    stored: str | None = None) -> FileOutcome:
        """`stored`: what the ledger and the log keep of the reason when `reason` may quote the file (a defect's
        location and rule); the report, encrypted at rest with a cipher, keeps every word."""
        final = self.spool.quarantine(claim, report)
        self.ledger.record_quarantined(ledger_id, str(final), stored or reason)
        log.warning("file_settled", outcome="quarantined", first_defect=stored or reason,
                    defects=len(report["defects"]), path=str(final))
        rule = report["defects"][0]["rule"] if report["defects"] else None
        return FileOutcome("quarantined", ledger_id, final, reason=reason, rule=rule)

    def _publish(self, claim: Claim, ledger_id: int, checked: FileParse, sha256: str, size: int) -> FileOutcome:
        header = checked.header
        assert header is not None
        self.ledger.record_parsed(ledger_id, file_identifier=header.file_identifier, flow=header.flow_reference,
                                  from_participant=header.from_participant, to_participant=header.to_participant,
                                  instances=checked.flow_count)
        ids: list[str] = []  # the first and the last event id, for the manifest
        test = False

        def messages() -> Generator[OutgoingMessage, None, None]:
            nonlocal test
            counted: Decision | None = None  # the decision of the events in a row not yet counted, and how many
            run = 0
            # closed at once when the publisher stops early (a build worker is then ended, not left sending)
            with contextlib.closing(self.build(claim.path, checked.valid(), sha256)) as built:
                try:
                    for message in built:
                        decision = message.decision
                        if decision is not None:  # an event's first message
                            ids[1:] = [message.event_id] if ids else [message.event_id, message.event_id]
                            if decision is not counted and decision != counted:
                                if counted is not None:
                                    self.on_decision(counted, run)
                                counted, run = decision, 0
                            run += 1
                            test = decision.test
                        yield OutgoingMessage(message.routing_key, message.body, message.event_id)
                finally:
                    if counted is not None:
                        self.on_decision(counted, run)

        if self.shadow:
            built = sum(1 for _ in messages())
            final = self.spool.archive(claim, self.clock().date())
            self.ledger.record_archived(ledger_id, str(final))
            log.info("file_settled", outcome="shadowed", flow=header.flow_reference, events=built,
                     file_identifier=header.file_identifier, sender=header.from_participant,
                     recipient=header.to_participant, path=str(final))
            return FileOutcome("shadowed", ledger_id, final, events=built)
        timeout = 120.0 + size / 50_000  # generous for big files: confirms are batched by fsync
        self.allow(timeout)  # building, signing and publishing every event, then the archive move
        with contextlib.closing(messages()) as outgoing:  # a broker failure closes it now, not when collected
            result = self.publisher.publish_all(outgoing, timeout=timeout)
        if not ids:
            raise RuntimeError("the build stage ended without a message for a file the check found events in")
        self.on_published(result)
        first_id, last_id = ids[0], ids[-1]
        manifest = build_manifest(header, sha256=sha256, size=size, original_name=claim.original_name,
                                  flow_count=checked.flow_count, group_count=checked.group_count,
                                  first_event_id=first_id, last_event_id=last_id,
                                  warnings=listed_defects(checked.warnings, header.flow_reference))
        _exchange, manifest_key = self.rules.placement(
            manifest_routing_key(header.flow_reference, header.from_participant,
                                 self.rules.addressee_key(FileFacts.from_header(header))), test)
        self.allow(MANIFEST_TIMEOUT)
        self.on_published(self.publisher.publish_all(
            [OutgoingMessage(manifest_key, self.sign(canonicalize(manifest, known_types=True)), manifest["id"])],
            timeout=MANIFEST_TIMEOUT))
        self.ledger.record_published(ledger_id, events=result.confirmed, first_event_id=first_id,
                                     last_event_id=last_id)
        final = self.spool.archive(claim, self.clock().date())
        self.ledger.record_archived(ledger_id, str(final))
        log.info("file_settled", outcome="archived", flow=header.flow_reference, file_identifier=header.file_identifier,
                 sender=header.from_participant, recipient=header.to_participant, events=result.confirmed,
                 path=str(final))
        return FileOutcome("archived", ledger_id, final, events=result.confirmed)

