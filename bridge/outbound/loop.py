"""Stage 4: the consuming loop. Deliveries in -> check -> de-duplicate -> batch -> write -> ack (or dead-letter).

One thread, one consumer; the checks (stage 1) run in this thread or in worker processes (bridge/outbound/stages.py).
A delivery is acked only when its event is in a durable file (or was already in one); a rejected one is
dead-lettered with a code and a reason and never blocks the queue. When the connection is lost, everything held is
forgotten: the broker redelivers it, and the ledger turns what was already written into plain acks. The loop
survives broker outages (reconnects with backoff), storage failures (re-runs recovery) and a check worker's death (a
new one checks the redelivered messages).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterable

import structlog

from bridge.errors import BrokerError, BrokerUnavailable, EventError, StorageError, WorkerError
from bridge.outbound.batching import Batcher, ReadyFile
from bridge.outbound.check import Checked, CheckedEvent, EventRejected, ManifestNotice, Rejection
from bridge.outbound.stages import CheckStage
from bridge.outbound.writer import OutboundWriter
from bridge.ports import Backoff, Consumer, Delivery, EventKey
from bridge.rules import Decision

log = structlog.get_logger("dtn_bridge.outbound")

INCOMPLETE_FILE = "incomplete_file"
# A reject reason may quote the value it refuses, and a signed event may carry a value of any size: a dead-letter
# header larger than a frame (128 kB) makes the broker close the connection, and the delivery would come back forever.
REASON_LIMIT = 1000


class OutboundLoop:
    """Consumes the outbound queue until `stop` is set; see docs/outbound.md.

    The consumer must be created with `prefetch=config.outbound.prefetch` (the loop holds at most that many
    unacked deliveries, and closes batches early when the window is full).
    """

    def __init__(self, consumer: Consumer, writer: OutboundWriter, checks: CheckStage | None, *,
                 poll_seconds: float = 1.0, backoff: Backoff = Backoff(),
                 monotonic: Callable[[], float] = time.monotonic,
                 on_written: Callable[[int], None] = lambda _count: None,
                 on_rejected: Callable[[str], None] = lambda _code: None,
                 on_decision: Callable[[Decision], None] = lambda _decision: None,
                 on_interrupted: Callable[[str | None], None] = lambda _error: None) -> None:
        """`checks` None: there is no trust store, so nothing can be verified and nothing is consumed.
        `on_written` (events now in a durable file), `on_rejected` (a reject code) and `on_decision` (a governance
        decision) feed the metrics; `on_interrupted` hears why writing stopped (the broker, a full disk, a worker)
        and None once it goes on (the status board)."""
        self.on_written = on_written
        self.on_rejected = on_rejected
        self.on_decision = on_decision
        self.on_interrupted = on_interrupted
        self.consumer = consumer
        self.writer = writer
        self.checks = checks
        self.poll_seconds = poll_seconds
        self.backoff = backoff
        self.monotonic = monotonic
        config = writer.config
        self.batcher = Batcher(config.batch_size, config.batch_seconds, config.prefetch)
        self._unacked: dict[int, None] = {}  # delivery tags of the current connection, ascending
        self._files_written = 0  # ready groups settled by the writer (a new file, or every event written before)
        self._next_checks: CheckStage | None = None  # set by another thread (a reload); taken after each `get`
        self._lock = threading.Lock()

    def replace_checks(self, checks: CheckStage) -> None:
        """Check with `checks` from now on (a reload's new rules): every delivery the loop takes after this call."""
        with self._lock:
            previous, self._next_checks = self._next_checks, checks
        if previous is not None:
            previous.close()

    def run(self, stop: threading.Event) -> None:
        """Consume until `stop` is set, then write the open batches, leave incomplete source files unacked
        (redelivered after a restart) and close the consumer. Without a trust store, consume nothing."""
        if self.checks is None:
            log.error("outbound_disabled", reason="signing.trust is not configured: outbound events stay queued")
            stop.wait()
            return
        self._recover_quietly()  # a row it cannot settle is rolled back; a broken ledger is retried by the steps
        try:
            self._consume(stop)
        finally:
            with self._lock:
                waiting, self._next_checks = self._next_checks, None
            for checks in (self.checks, waiting):
                if checks is not None:
                    checks.close()

    def _consume(self, stop: threading.Event) -> None:
        failures = 0
        while not stop.is_set():
            try:
                self._step()
                if failures:
                    log.info("outbound_resumed", after_failures=failures)
                    self.on_interrupted(None)
                failures = 0
            except (BrokerError, StorageError, WorkerError) as exc:
                failures += 1
                self.on_interrupted(f"{type(exc).__name__}: {exc}")
                self._forget()
                delay = self.backoff.delay(failures)
                log.warning("outbound_interrupted", error=str(exc), kind=type(exc).__name__, retry_in=round(delay, 2))
                if not isinstance(exc, BrokerUnavailable):
                    self.consumer.close()  # give every held delivery back now
                if stop.wait(delay):
                    break
                if isinstance(exc, StorageError):
                    self._recover_quietly()
        self._shutdown()

    # --------------------------------------------------------------------------------------------------- steps

    def _step(self) -> None:
        assert self.checks is not None
        timeout = 0.0 if self.checks.pending else self.poll_seconds
        deadline = self.batcher.next_deadline()
        if deadline is not None:
            timeout = max(0.0, min(timeout, deadline - self.monotonic()))
        delivery = self.consumer.get(timeout)
        # After `get`, not before: a reload while it waited is in force for the delivery that ended the wait.
        self._switch_checks()
        if delivery is not None:
            self._unacked[delivery.delivery_tag] = None
            self.checks.submit(delivery)
        # Take the answers in delivery order: all of them when the queue is idle, else those ready.
        self._receive(self.checks.take(drain=delivery is None))
        self._flush_all(self.batcher.due(self.monotonic()))
        while self.batcher.held >= self.batcher.capacity:
            ready = self.batcher.relieve()
            if not ready:
                break
            self._flush_all(ready)

    def _receive(self, answers: list[tuple[Delivery, Checked]]) -> None:
        if not answers:
            return
        written = self._written_among(answers)
        files_before = self._files_written
        for position, (delivery, checked) in enumerate(answers):
            if self._files_written != files_before:  # a file just written may hold copies answered after it
                files_before = self._files_written
                written |= self._written_among(answers[position:])
            if checked.decision is not None:
                self.on_decision(checked.decision)
            outcome = checked.outcome
            if isinstance(outcome, Rejection):
                self._reject(delivery, outcome.code, outcome.reason)
            elif isinstance(outcome, ManifestNotice):
                self.writer.note_manifest(outcome)
                self._ack([delivery])
            elif outcome.key in written or self.batcher.find(outcome.key) is not None:
                # Already in a file, or held with its first delivery (unacked, so the broker would give that one
                # back): this copy is acked now and never takes a place in the prefetch window.
                log.debug("outbound_duplicate", event_id=outcome.id, redelivered=delivery.redelivered)
                self._ack([delivery])
            else:
                self._flush_all(self.batcher.add(outcome, delivery, self.monotonic()))

    def _written_among(self, answers: list[tuple[Delivery, Checked]]) -> set[EventKey]:
        # A redelivered event may have been written by the other daemon of a pair before it died: `refresh`.
        events = [(delivery, checked.outcome) for delivery, checked in answers
                  if isinstance(checked.outcome, CheckedEvent)]
        return self.writer.written([event.key for _delivery, event in events],
                                   refresh=any(delivery.redelivered for delivery, _event in events))

    def _switch_checks(self) -> None:
        if self._next_checks is None:  # the usual case, read without the lock: a reload is rare
            return
        with self._lock:
            checks, self._next_checks = self._next_checks, None
        if checks is None:
            return
        previous, self.checks = self.checks, checks
        if previous is not None:
            try:
                self._receive(previous.take(drain=True))  # what the old stage already judged stands
            finally:
                previous.close()

    def _flush_all(self, ready: Iterable[ReadyFile]) -> None:
        for one in ready:
            self._flush(one)

    def _flush(self, ready: ReadyFile) -> None:
        if ready.kind == "incomplete":
            for held in ready.items:
                self._reject(held.delivery, INCOMPLETE_FILE,
                             f"event {held.event.id} belongs to a source file whose events did not all arrive "
                             "within outbound.batch_seconds, and it has no test data flag to start a new file")
            return
        try:
            record = self.writer.write(ready)
        except EventRejected as exc:
            for held in ready.items:
                self._reject(held.delivery, exc.code, str(exc))
            return
        except EventError as exc:
            log.warning("outbound_original_refused", reason=str(exc), events=len(ready.items))
            self._flush_all(self.batcher.divert(list(ready.items)))
            return
        self._files_written += 1
        self._ack([held.delivery for held in ready.items])
        self.on_written(record.events if record is not None else 0)

    # ---------------------------------------------------------------------------------------------- settling

    def _ack(self, deliveries: list[Delivery]) -> None:
        """Ack with one `multiple` ack when these are all the oldest unacked deliveries, else one by one."""
        if not deliveries:
            return
        tags = {delivery.delivery_tag for delivery in deliveries}
        top = max(deliveries, key=lambda delivery: delivery.delivery_tag)
        covered = 0
        for tag in self._unacked:
            if tag > top.delivery_tag:
                break
            if tag not in tags:
                break
            covered += 1
        if covered == len(tags):
            self.consumer.ack(top, multiple=True)
        else:
            for delivery in deliveries:
                self.consumer.ack(delivery)
        for tag in tags:
            self._unacked.pop(tag, None)

    def _reject(self, delivery: Delivery, code: str, text: str) -> None:
        # The reason may quote a value of the event (meter data): it goes to the dead-letter header, and to the
        # log at debug only; bounded, see REASON_LIMIT.
        if len(text) > REASON_LIMIT:
            text = f"{text[:REASON_LIMIT - 40]}... ({len(text)} characters in all)"
        log.warning("outbound_rejected", code=code, message_id=delivery.message_id, routing_key=delivery.routing_key)
        log.debug("outbound_rejected_reason", code=code, message_id=delivery.message_id, reason=text)
        self.consumer.reject(delivery, code, text)
        self._unacked.pop(delivery.delivery_tag, None)
        self.on_rejected(code)

    # ------------------------------------------------------------------------------------------- lifecycle

    def _forget(self) -> None:
        """The deliveries held are void (lost connection) or given back: the broker redelivers them."""
        self.batcher.clear()
        if self.checks is not None:
            self.checks.reset()
        self._unacked.clear()

    def _recover_quietly(self) -> None:
        try:
            self.writer.recover()
        except StorageError as exc:
            log.error("outbound_recovery_failed", error=str(exc))

    def _shutdown(self) -> None:
        """Write what is batched (acked if the broker is still there); incomplete source files are left unacked."""
        try:
            self._flush_all(self.batcher.take_batches())
        except (BrokerError, StorageError) as exc:
            log.warning("outbound_stop_flush_failed", error=str(exc))
        if self.batcher.open_originals:
            log.info("outbound_stop_abandoned", source_files=self.batcher.open_originals, events=self.batcher.held)
        self._forget()
        self.consumer.close()
