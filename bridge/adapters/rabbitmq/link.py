"""One AMQP connection owned by one I/O thread (see the package docstring for why); other threads hand it
closures and wait on futures. A dead link records why (`Failure`) and every waiter gets that error."""

from __future__ import annotations

import contextlib
import functools
import logging
import threading
from collections.abc import Callable, Iterator
from concurrent.futures import Future
from concurrent.futures import TimeoutError as FutureTimeout
from dataclasses import dataclass
from typing import Any, NoReturn

import pika.exceptions
from pika.adapters.select_connection import IOLoop, SelectConnection
from pika.channel import Channel

from bridge.adapters.rabbitmq.endpoints import Endpoint, describe
from bridge.errors import BrokerError, BrokerUnavailable

log = logging.getLogger(__name__)

_RPC_TIMEOUT = 30.0
_CLOSE_TIMEOUT = 5.0


@dataclass(frozen=True, slots=True)
class Failure:
    """Why a link is dead; builds a fresh exception each time so tracebacks do not pile up."""

    kind: type[BrokerError]
    message: str
    cause: BaseException | None = None

    def build(self) -> BrokerError:
        exc = self.kind(self.message)
        exc.__cause__ = self.cause
        return exc

    def raise_(self) -> NoReturn:
        raise self.build()


class _CoalescingConnection(SelectConnection):  # type: ignore[misc]  # pika is untyped (Any): see pyproject
    """A SelectConnection that can write many frames as one buffer.

    pika hands every frame to the transport on its own, and the transport sends each with its own send(): three
    system calls per published message (method, header, body). Inside `coalesced()` the frames wait in a list and
    go to the transport joined, so a batch of publishes costs one send. Runs on the I/O thread only.
    """

    _held: list[bytes] | None = None

    def _adapter_emit_data(self, data: bytes) -> None:
        if self._held is not None:
            self._held.append(data)
        else:
            super()._adapter_emit_data(data)

    @contextlib.contextmanager
    def coalesced(self) -> Iterator[None]:
        self._held = []
        try:
            yield
        finally:
            held, self._held = self._held, None
            if held:
                super()._adapter_emit_data(b"".join(held))


class Link:
    """One AMQP connection owned by one I/O thread; other threads talk to it only through closures."""

    def __init__(self, endpoint: Endpoint, on_dead: Callable[[], None] | None = None) -> None:
        self.label = endpoint.label
        self._params = endpoint.params
        self._on_dead = on_dead
        self._ioloop = IOLoop()
        self._conn: _CoalescingConnection | None = None
        self._lock = threading.Lock()
        self._settled = threading.Event()  # the opening handshake finished, one way or the other
        self._failure: Failure | None = None
        self._pending: set[Future[Any]] = set()
        self._doing = "talking to the broker"
        self._thread = threading.Thread(target=self._run, name=f"rabbitmq-io {self.label}", daemon=True)

    # -- caller side --

    @property
    def is_open(self) -> bool:
        """True while the connection is up and nothing has failed."""
        conn = self._conn
        return self._failure is None and self._settled.is_set() and conn is not None and conn.is_open

    @property
    def failure(self) -> Failure | None:
        """Why the link is dead, or None while it is alive."""
        return self._failure

    def open(self, timeout: float) -> None:
        """Start the I/O thread and wait until the AMQP handshake is done; raises BrokerUnavailable."""
        self._thread.start()
        if not self._settled.wait(timeout):
            self.abort(
                Failure(BrokerUnavailable, f"cannot connect to {self.label}: no answer within {timeout:g}s")
            )
        failure = self._failure
        if failure is not None:
            failure.raise_()

    def call(self, fn: Callable[[], None]) -> None:
        """Run `fn` on the I/O thread without waiting; a pika error in it kills the link."""
        failure = self._failure
        if failure is not None:
            failure.raise_()
        self._ioloop.add_callback_threadsafe(lambda: self._guarded(fn))

    def rpc(
        self, what: str, start: Callable[[Callable[[Any], None]], None], timeout: float = _RPC_TIMEOUT
    ) -> Any:
        """Run `start(done)` on the I/O thread until it calls `done(result)`; names `what` on failure."""
        fut: Future[Any] = Future()
        with self._lock:
            if self._failure is not None:
                self._failure.raise_()
            self._pending.add(fut)

        def run() -> None:
            self._doing = what
            start(functools.partial(self.resolve, fut))

        self._ioloop.add_callback_threadsafe(lambda: self._guarded(run))
        try:
            return fut.result(timeout)
        except FutureTimeout:
            failure = Failure(BrokerUnavailable, f"{what}: no answer from {self.label} within {timeout:g}s")
            self.abort(failure)
            failure.raise_()
        finally:
            with self._lock:
                self._pending.discard(fut)

    def resolve(self, fut: Future[Any], result: Any = None, error: BaseException | None = None) -> None:
        """Settle `fut` once, from whichever thread gets there first."""
        with self._lock:
            if fut.done():
                return
            if error is None:
                fut.set_result(result)
            else:
                fut.set_exception(error)

    def abort(self, failure: Failure) -> None:
        """Mark the link dead with `failure`, wake every waiter, close the connection in the background."""
        self._fail(failure)
        self._ioloop.add_callback_threadsafe(self._close_on_io)

    def close(self, timeout: float = _CLOSE_TIMEOUT) -> None:
        """Close the connection politely (queued work, e.g. acks, is sent first) and wait for the thread."""
        self.abort(Failure(BrokerUnavailable, f"connection to {self.label} was closed by dtn-bridge"))
        if self._thread.is_alive() and threading.current_thread() is not self._thread:
            self._thread.join(timeout)

    # -- I/O thread side --

    def coalesced(self) -> contextlib.AbstractContextManager[None]:
        """On the I/O thread: write the frames made inside as one buffer (see _CoalescingConnection)."""
        conn = self._conn
        return conn.coalesced() if conn is not None else contextlib.nullcontext()

    def doing(self, what: str) -> None:
        """Record what the I/O thread is doing, so a channel error can say what it was about."""
        self._doing = what

    def open_channel(self, timeout: float = _RPC_TIMEOUT) -> Channel:
        """Open a channel whose broker-side closure kills the link with a clear error."""

        def start(done: Callable[[Any], None]) -> None:
            assert self._conn is not None
            channel = self._conn.channel(on_open_callback=done)
            channel.add_on_close_callback(self._on_channel_closed)

        channel: Channel = self.rpc("opening a channel", start, timeout)
        return channel

    def _run(self) -> None:
        try:
            self._conn = _CoalescingConnection(
                self._params,
                on_open_callback=self._on_open,
                on_open_error_callback=self._on_open_error,
                on_close_callback=self._on_closed,
                custom_ioloop=self._ioloop,
            )
            self._conn.add_on_connection_blocked_callback(
                lambda _conn, _frame: log.warning(
                    "RabbitMQ %s blocked publishing (resource alarm)", self.label
                )
            )
            self._conn.add_on_connection_unblocked_callback(
                lambda _conn, _frame: log.info("RabbitMQ %s unblocked publishing", self.label)
            )
            self._ioloop.start()
        except Exception as exc:  # a defect in a callback: never leave callers waiting forever
            log.exception("RabbitMQ I/O thread for %s failed", self.label)
            self._fail(
                Failure(BrokerUnavailable, f"I/O thread for {self.label} failed: {describe(exc)}", exc)
            )
        finally:
            self._fail(Failure(BrokerUnavailable, f"connection to {self.label} ended"))
            self._settled.set()
            try:
                self._ioloop.close()
            except Exception:  # closing the poller must not mask the real outcome
                log.debug("closing ioloop failed", exc_info=True)

    def _guarded(self, fn: Callable[[], None]) -> None:
        try:
            fn()
        except Exception as exc:  # noqa: BLE001 (any pika error while acting on the caller's behalf kills the link)
            log.warning("RabbitMQ %s: %s failed: %s", self.label, self._doing, describe(exc))
            self._fail(
                Failure(BrokerUnavailable, f"{self._doing} on {self.label} failed: {describe(exc)}", exc)
            )
            self._close_on_io()

    def _on_open(self, _conn: Any) -> None:
        log.info("connected to RabbitMQ %s", self.label)
        self._settled.set()

    def _on_open_error(self, _conn: Any, exc: BaseException) -> None:
        self._fail(Failure(BrokerUnavailable, f"cannot connect to {self.label}: {describe(exc)}", exc))
        self._settled.set()
        self._ioloop.stop()

    def _on_closed(self, _conn: Any, exc: BaseException) -> None:
        if self._failure is None:
            log.warning("RabbitMQ connection %s lost: %s", self.label, describe(exc))
        self._fail(Failure(BrokerUnavailable, f"connection to {self.label} lost: {describe(exc)}", exc))
        self._ioloop.stop()

    def _on_channel_closed(self, _channel: Channel, reason: BaseException) -> None:
        # Connection-level closures reach channels first; the connection callback reports those.
        if isinstance(reason, pika.exceptions.ChannelClosedByBroker):
            # 404 means the topology vanished: reconnecting declares it again, so it is worth a retry.
            kind: type[BrokerError] = BrokerUnavailable if reason.reply_code == 404 else BrokerError
            message = f"{self._doing} on {self.label} failed: {reason.reply_code} {reason.reply_text}"
            log.warning("RabbitMQ %s", message)
            self._fail(Failure(kind, message, reason))
            self._close_on_io()

    def _close_on_io(self) -> None:
        conn = self._conn
        if conn is not None and conn.is_closing:
            return  # `_on_closed` or `_on_open_error` stops the loop
        if conn is not None and not conn.is_closed:  # open, or still opening
            try:
                conn.close()
                return
            except pika.exceptions.AMQPError:
                log.debug("closing %s failed", self.label, exc_info=True)
        self._ioloop.stop()

    def _fail(self, failure: Failure) -> None:
        """Record the first failure and fail every pending RPC with it (any thread)."""
        with self._lock:
            if self._failure is None:
                self._failure = failure
            pending = list(self._pending)
            recorded = self._failure
        for fut in pending:
            self.resolve(fut, error=recorded.build())
        if self._on_dead is not None:
            self._on_dead()
