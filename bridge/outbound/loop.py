"""Stage 4: the consuming loop. Deliveries in -> verify -> de-duplicate -> batch -> write -> ack (or dead-letter).

One thread, one consumer. A delivery is acked only when its event is in a durable file (or was already in one);
a rejected one is dead-lettered with a code and a reason and never blocks the queue. When the connection is lost,
everything held is forgotten: the broker redelivers it, and the ledger turns what was already written into plain
acks. The loop survives broker outages (reconnects with backoff) and storage failures (re-runs recovery).
"""

from __future__ import annotations

import threading
import time
from collections import deque
from collections.abc import Callable, Iterable
from concurrent.futures import Future, ThreadPoolExecutor

import structlog

from bridge.adapters.rabbitmq import Backoff, Delivery, RabbitConsumer
from bridge.errors import BrokerError, BrokerUnavailable, EventError, StorageError
from bridge.outbound.batching import Batcher, ReadyFile
from bridge.outbound.verify import EventRejected, ManifestNotice, VerifiedEvent
from bridge.outbound.writer import OutboundWriter

log = structlog.get_logger("dtn_bridge.outbound")

_Checked = tuple[VerifiedEvent | ManifestNotice, bool]
INCOMPLETE_FILE = "incomplete_file"
INTERNAL_ERROR = "internal_error"


class OutboundLoop:
    """Consumes the outbound queue until `stop` is set; see docs/outbound.md.

    The consumer must be created with `prefetch=config.outbound.prefetch` (the loop holds at most that many
    unacked deliveries, and closes batches early when the window is full).
    """

    def __init__(self, consumer: RabbitConsumer, writer: OutboundWriter, *, poll_seconds: float = 1.0,
                 backoff: Backoff = Backoff(), monotonic: Callable[[], float] = time.monotonic,
                 verify_threads: int = 2, on_written: Callable[[int], None] = lambda _count: None,
                 on_rejected: Callable[[str], None] = lambda _code: None,
                 on_interrupted: Callable[[str | None], None] = lambda _error: None) -> None:
        """`verify_threads`: Ed25519 verification releases the GIL, so a few threads verify while this one
        batches and writes; results are still taken in delivery order. `on_written` (events now in a durable
        file) and `on_rejected` (a reject code) feed the metrics; `on_interrupted` hears why writing stopped (the
        broker, a full disk) and None once it goes on (the status board)."""
        self.on_written = on_written
        self.on_rejected = on_rejected
        self.on_interrupted = on_interrupted
        self.consumer = consumer
        self.writer = writer
        self.poll_seconds = poll_seconds
        self.backoff = backoff
        self.monotonic = monotonic
        config = writer.config
        self.batcher = Batcher(config.batch_size, config.batch_seconds, config.prefetch)
        self.verify_threads = max(0, verify_threads)
        self._depth = 8 * max(1, self.verify_threads)  # deliveries being verified at once
        self._verifying: deque[tuple[Delivery, Future[_Checked]]] = deque()
        self._pool: ThreadPoolExecutor | None = None
        self._unacked: dict[int, None] = {}  # delivery tags of the current connection, ascending

    def run(self, stop: threading.Event) -> None:
        """Consume until `stop` is set, then write the open batches, leave incomplete source files unacked
        (redelivered after a restart) and close the consumer. Without a trust store, consume nothing."""
        if not self.writer.enabled:
            log.error("outbound_disabled", reason="signing.trust is not configured: outbound events stay queued")
            stop.wait()
            return
        self.writer.recover()
        if self.verify_threads:
            self._pool = ThreadPoolExecutor(self.verify_threads, thread_name_prefix="outbound-verify")
        try:
            self._consume(stop)
        finally:
            if self._pool is not None:
                self._pool.shutdown(wait=True, cancel_futures=True)
                self._pool = None

    def _consume(self, stop: threading.Event) -> None:
        failures = 0
        while not stop.is_set():
            try:
                self._step()
                if failures:
                    log.info("outbound_resumed", after_failures=failures)
                    self.on_interrupted(None)
                failures = 0
            except (BrokerError, StorageError) as exc:
                failures += 1
                self.on_interrupted(f"{type(exc).__name__}: {exc}")
                self._forget()
                delay = self.backoff.delay(failures)
                log.warning("outbound_interrupted", error=str(exc), kind=type(exc).__name__, retry_in=round(delay, 2))
                if isinstance(exc, StorageError) or not isinstance(exc, BrokerUnavailable):
                    self.consumer.close()  # give every held delivery back now
                if stop.wait(delay):
                    break
                if isinstance(exc, StorageError):
                    self._recover_quietly()
        self._shutdown()

    # --------------------------------------------------------------------------------------------------- steps

    def _step(self) -> None:
        timeout = 0.0 if self._verifying else self.poll_seconds
        deadline = self.batcher.next_deadline()
        if deadline is not None:
            timeout = max(0.0, min(timeout, deadline - self.monotonic()))
        delivery = self.consumer.get(timeout)
        if delivery is not None:
            self._unacked[delivery.delivery_tag] = None
            self._verifying.append((delivery, self._submit(delivery.body)))
        # Take verified results in delivery order: all of them when the queue is idle, else as they finish.
        while self._verifying and (delivery is None or len(self._verifying) >= self._depth
                                   or self._verifying[0][1].done()):
            self._receive(*self._verifying.popleft())
        self._flush_all(self.batcher.due(self.monotonic()))
        while self.batcher.held >= self.batcher.capacity:
            ready = self.batcher.relieve()
            if not ready:
                break
            self._flush_all(ready)

    def _submit(self, body: bytes) -> Future[_Checked]:
        if self._pool is not None:
            return self._pool.submit(self._check, body)
        done: Future[_Checked] = Future()  # verify_threads=0: verify here, in line
        try:
            done.set_result(self._check(body))
        except Exception as exc:
            done.set_exception(exc)
        return done

    def _check(self, body: bytes) -> _Checked:
        """On a verify thread: the verified item, and whether an event of it is already in a file."""
        item = self.writer.verify(body)
        return item, isinstance(item, VerifiedEvent) and self.writer.already_written(item.id)

    def _receive(self, delivery: Delivery, verifying: Future[_Checked]) -> None:
        try:
            item, written = verifying.result()
        except EventRejected as exc:
            self._reject(delivery, exc.code, str(exc))
            return
        except Exception as exc:  # a defect must not turn one message into a poison pill that stops the queue
            log.exception("outbound_verify_failed", message_id=delivery.message_id)
            self._reject(delivery, INTERNAL_ERROR, f"verification failed: {type(exc).__name__}: {exc}")
            return
        if isinstance(item, ManifestNotice):
            self.writer.note_manifest(item)
            self._ack([delivery])
            return
        if written or self.batcher.find(item.id) is not None:
            # Already in a file, or held with its first delivery (unacked, so the broker would give that one back):
            # this copy is acked now and never takes a place in the prefetch window.
            log.debug("outbound_duplicate", event_id=item.id, redelivered=delivery.redelivered, written=written)
            self._ack([delivery])
            return
        self._flush_all(self.batcher.add(item, delivery, self.monotonic()))

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
        # log at debug only.
        log.warning("outbound_rejected", code=code, message_id=delivery.message_id, routing_key=delivery.routing_key)
        log.debug("outbound_rejected_reason", code=code, message_id=delivery.message_id, reason=text)
        self.consumer.reject(delivery, code, text)
        self._unacked.pop(delivery.delivery_tag, None)
        self.on_rejected(code)

    # ------------------------------------------------------------------------------------------- lifecycle

    def _forget(self) -> None:
        """The deliveries held are void (lost connection) or given back: the broker redelivers them."""
        self.batcher.clear()
        self._verifying.clear()
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
