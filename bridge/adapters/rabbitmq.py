"""RabbitMQ adapter: the only module of dtn-bridge that imports pika.

Design (why it looks like this):

* pika is not thread-safe, and `BlockingConnection` services heartbeats only inside pika calls, so an idle
  or busy daemon would lose its connection. Each connection is therefore a `_Link`: a `SelectConnection`
  owned by ONE I/O thread that runs the ioloop for the connection's whole life (heartbeats, confirms,
  returns, deliveries). Caller threads never touch pika objects; they hand closures to the I/O thread with
  `IOLoop.add_callback_threadsafe` and wait on a `Future` or a `Condition`.
* Publishing streams confirms asynchronously (RabbitMQ's recommended strategy): the caller pulls messages
  lazily from the iterable in small batches while fewer than `window` are unconfirmed; the I/O thread
  settles delivery tags (including `multiple` acks). Waiting per message would be the "publish-and-wait"
  anti-pattern.
* pika exceptions never escape: they are translated into `bridge.errors` (`raise ... from exc`). Losing the
  connection is `BrokerUnavailable` (retry the unit; event ids are deterministic so duplicates are
  harmless), a nack or a return is `PublishRejected`, a broker refusal such as PRECONDITION_FAILED is a
  plain `BrokerError`.
* Nothing sensitive is logged: endpoints are shown as host:port/vhost, never the URL.
"""

from __future__ import annotations

import contextlib
import functools
import itertools
import logging
import queue as queue_module
import ssl
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from concurrent.futures import Future
from concurrent.futures import TimeoutError as FutureTimeout
from dataclasses import dataclass
from typing import Any, NoReturn, Self
from urllib.parse import parse_qs, quote, urlsplit

import pika
import pika.credentials
import pika.exceptions
import pika.frame
import pika.spec
from pika.adapters.select_connection import IOLoop, SelectConnection
from pika.channel import Channel

from bridge.adapters.topology import Topology
from bridge.errors import BrokerError, BrokerUnavailable, ConfigError, PublishRejected
from bridge.ports import Backoff, Delivery, MessagesRejected, OutgoingMessage, PublishResult, Rejection

__all__ = [
    "RabbitConsumer",
    "RabbitPublisher",
    "Topology",
    "broker_endpoint_labels",
]

log = logging.getLogger(__name__)

REJECT_REASON_HEADER = "x-dtn-reject-reason"
REJECT_CODE_HEADER = "x-dtn-reject-code"
ORIGINAL_ROUTING_KEY_HEADER = "x-dtn-original-routing-key"

# Messages handed to the I/O thread per closure: large enough to amortise the wake-up, small enough to
# keep the ioloop responsive (heartbeats, acks) while it publishes.
_BATCH = 200
_RPC_TIMEOUT = 30.0
_CLOSE_TIMEOUT = 5.0
_MAX_KEPT_REJECTIONS = 100


# ----------------------------------------------------------------------------------------------------
# The link: one connection, one I/O thread


@dataclass(frozen=True, slots=True)
class _Failure:
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


@dataclass(frozen=True, slots=True)
class _Endpoint:
    """Connection parameters of one URL plus a label safe to log."""

    params: pika.URLParameters
    label: str


def _endpoint(
    index: int,
    url: str,
    *,
    heartbeat: int,
    connect_timeout: float,
    ssl_context: ssl.SSLContext | None,
    client_name: str,
    external_auth: bool = False,
) -> _Endpoint:
    """Parse one broker URL; the URL itself never appears in errors (it may hold a password).

    `external_auth` logs in with the TLS client certificate (SASL EXTERNAL) instead of the URL's user/password.
    """
    key = f"broker.urls[{index}]"
    if not url.lower().startswith(("amqp://", "amqps://")):
        raise ConfigError(key, "must start with amqp:// or amqps://")
    try:
        # pika would build a TLS context of its own from ssl_options (unverified with some values): refused before
        # pika reads it
        if "ssl_options" in parse_qs(urlsplit(url).query, keep_blank_values=True):
            raise ConfigError(key, "the URL parameter ssl_options is not accepted: it would replace the bridge's "
                              "verified TLS context; configure TLS under broker.tls")
        params = pika.URLParameters(url)
    except ConfigError:
        raise
    except Exception as exc:  # pika raises ValueError/TypeError/KeyError for bad URLs
        raise ConfigError(key, f"not a valid amqp:// or amqps:// URL ({type(exc).__name__})") from None
    params.heartbeat = heartbeat
    params.socket_timeout = connect_timeout
    params.stack_timeout = connect_timeout
    params.connection_attempts = 1
    params.client_properties = {"connection_name": client_name, "product": "dtn-bridge"}
    if ssl_context is not None:
        if params.ssl_options is None:
            raise ConfigError(key, "a TLS context was given but the URL is amqp://, use amqps://")
        params.ssl_options = pika.SSLOptions(ssl_context, server_hostname=params.host)
    if external_auth:
        if ssl_context is None:
            raise ConfigError(key, "EXTERNAL authentication needs TLS with a client certificate (a TLS context)")
        params.credentials = pika.credentials.ExternalCredentials()
    vhost = "" if params.virtual_host == "/" else "/" + quote(params.virtual_host, safe="")
    return _Endpoint(params, f"{params.host}:{params.port}{vhost}")


def _endpoints(
    urls: Sequence[str],
    *,
    heartbeat: int,
    connect_timeout: float,
    ssl_context: ssl.SSLContext | None,
    client_name: str,
    external_auth: bool = False,
) -> list[_Endpoint]:
    """Every URL parsed and every connection setting checked, before anything connects."""
    if isinstance(urls, str) or not urls:
        raise ConfigError("broker.urls", "give a non-empty list of amqp:// or amqps:// URLs")
    if heartbeat <= 0:
        raise ConfigError("broker.heartbeat", "must be a positive number of seconds (0 would disable heartbeats)")
    if connect_timeout <= 0:
        raise ConfigError("broker.connect_timeout", "must be positive")
    return [
        _endpoint(i, url, heartbeat=heartbeat, connect_timeout=connect_timeout, ssl_context=ssl_context,
                  client_name=client_name, external_auth=external_auth)
        for i, url in enumerate(urls)
    ]


def broker_endpoint_labels(
    urls: Sequence[str],
    *,
    heartbeat: int,
    connect_timeout: float,
    ssl_options: ssl.SSLContext | None = None,
    external_auth: bool = False,
) -> list[str]:
    """The checks a publisher or consumer runs on its URLs and settings, without connecting (check-config, start-up):
    a ConfigError naming `broker.urls[i]` or the setting; else each endpoint as host:port/vhost (no credentials)."""
    return [endpoint.label for endpoint in _endpoints(urls, heartbeat=heartbeat, connect_timeout=connect_timeout,
                                                      ssl_context=ssl_options, client_name="dtn-bridge-check",
                                                      external_auth=external_auth)]


def _describe(exc: BaseException) -> str:
    """A short, credential-free description of a pika exception."""
    # pika wraps connection failures (refused socket, TLS verification, login) in workflow exceptions whose
    # text is just their class name: describe the innermost cause, which says what went wrong.
    for _ in range(5):
        inner = getattr(exc, "exceptions", None) or (getattr(exc, "exception", None),)
        if not isinstance(inner[-1], BaseException):
            break
        exc = inner[-1]
    if isinstance(exc, (pika.exceptions.ConnectionClosed, pika.exceptions.ChannelClosed)):
        return f"{exc.reply_code} {exc.reply_text}"
    text = str(exc) or type(exc).__name__
    return f"{type(exc).__name__}: {text}" if type(exc).__name__ not in text else text


class _CoalescingConnection(SelectConnection):
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


class _Link:
    """One AMQP connection owned by one I/O thread; other threads talk to it only through closures."""

    def __init__(self, endpoint: _Endpoint, on_dead: Callable[[], None] | None = None) -> None:
        self.label = endpoint.label
        self._params = endpoint.params
        self._on_dead = on_dead
        self._ioloop = IOLoop()
        self._conn: _CoalescingConnection | None = None
        self._lock = threading.Lock()
        self._settled = threading.Event()  # the opening handshake finished, one way or the other
        self._failure: _Failure | None = None
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
    def failure(self) -> _Failure | None:
        """Why the link is dead, or None while it is alive."""
        return self._failure

    def open(self, timeout: float) -> None:
        """Start the I/O thread and wait until the AMQP handshake is done; raises BrokerUnavailable."""
        self._thread.start()
        if not self._settled.wait(timeout):
            self.abort(
                _Failure(BrokerUnavailable, f"cannot connect to {self.label}: no answer within {timeout:g}s")
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
            failure = _Failure(BrokerUnavailable, f"{what}: no answer from {self.label} within {timeout:g}s")
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

    def abort(self, failure: _Failure) -> None:
        """Mark the link dead with `failure`, wake every waiter, close the connection in the background."""
        self._fail(failure)
        self._ioloop.add_callback_threadsafe(self._close_on_io)

    def close(self, timeout: float = _CLOSE_TIMEOUT) -> None:
        """Close the connection politely (queued work, e.g. acks, is sent first) and wait for the thread."""
        self.abort(_Failure(BrokerUnavailable, f"connection to {self.label} was closed by dtn-bridge"))
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
                _Failure(BrokerUnavailable, f"I/O thread for {self.label} failed: {_describe(exc)}", exc)
            )
        finally:
            self._fail(_Failure(BrokerUnavailable, f"connection to {self.label} ended"))
            self._settled.set()
            try:
                self._ioloop.close()
            except Exception:  # closing the poller must not mask the real outcome
                log.debug("closing ioloop failed", exc_info=True)

    def _guarded(self, fn: Callable[[], None]) -> None:
        try:
            fn()
        except Exception as exc:  # any pika error while acting on the caller's behalf kills the link
            log.warning("RabbitMQ %s: %s failed: %s", self.label, self._doing, _describe(exc))
            self._fail(
                _Failure(BrokerUnavailable, f"{self._doing} on {self.label} failed: {_describe(exc)}", exc)
            )
            self._close_on_io()

    def _on_open(self, _conn: Any) -> None:
        log.info("connected to RabbitMQ %s", self.label)
        self._settled.set()

    def _on_open_error(self, _conn: Any, exc: BaseException) -> None:
        self._fail(_Failure(BrokerUnavailable, f"cannot connect to {self.label}: {_describe(exc)}", exc))
        self._settled.set()
        self._ioloop.stop()

    def _on_closed(self, _conn: Any, exc: BaseException) -> None:
        if self._failure is None:
            log.warning("RabbitMQ connection %s lost: %s", self.label, _describe(exc))
        self._fail(_Failure(BrokerUnavailable, f"connection to {self.label} lost: {_describe(exc)}", exc))
        self._ioloop.stop()

    def _on_channel_closed(self, _channel: Channel, reason: BaseException) -> None:
        # Connection-level closures reach channels first; the connection callback reports those.
        if isinstance(reason, pika.exceptions.ChannelClosedByBroker):
            # 404 means the topology vanished: reconnecting declares it again, so it is worth a retry.
            kind: type[BrokerError] = BrokerUnavailable if reason.reply_code == 404 else BrokerError
            message = f"{self._doing} on {self.label} failed: {reason.reply_code} {reason.reply_text}"
            log.warning("RabbitMQ %s", message)
            self._fail(_Failure(kind, message, reason))
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

    def _fail(self, failure: _Failure) -> None:
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


# ----------------------------------------------------------------------------------------------------
# Shared client plumbing: failover, topology, reconnect


def _with_callback(
    fn: Callable[..., Any], *args: Any, **kwargs: Any
) -> Callable[[Callable[[Any], None]], None]:
    """Adapt a pika method taking `callback=` to the `start(done)` shape of `_Link.rpc`."""

    def start(done: Callable[[Any], None]) -> None:
        fn(*args, callback=done, **kwargs)

    return start


def _declare_topology(link: _Link, channel: Channel, topology: Topology) -> None:
    """Declare exchanges, queues, bindings; idempotent; a mismatch names the object (PRECONDITION_FAILED)."""
    for ex in topology.exchanges:
        link.rpc(
            f"declaring exchange {ex.name!r} ({ex.type}, durable)",
            _with_callback(channel.exchange_declare, ex.name, exchange_type=ex.type, durable=ex.durable),
        )
    for q in topology.queues:
        args = ", ".join(f"{k}={v}" for k, v in q.arguments.items())
        link.rpc(
            f"declaring queue {q.name!r} ({args})",
            _with_callback(channel.queue_declare, q.name, durable=q.durable, arguments=dict(q.arguments)),
        )
    for b in topology.bindings:
        link.rpc(
            f"binding queue {b.queue!r} to exchange {b.exchange!r} with {b.routing_key!r}",
            _with_callback(channel.queue_bind, b.queue, b.exchange, routing_key=b.routing_key),
        )


class _Client:
    """Failover connect, reconnect with backoff, and close; subclasses set up their channels in `_setup`."""

    def __init__(
        self,
        urls: Sequence[str],
        *,
        topology: Topology,
        heartbeat: int,
        connect_timeout: float,
        ssl_options: ssl.SSLContext | None,
        client_name: str,
        external_auth: bool = False,
    ) -> None:
        self._endpoints = _endpoints(urls, heartbeat=heartbeat, connect_timeout=connect_timeout,
                                     ssl_context=ssl_options, client_name=client_name, external_auth=external_auth)
        self._topology = topology
        self._connect_timeout = connect_timeout
        self._api_lock = threading.RLock()
        self._link: _Link | None = None
        self._generation = 0

    @property
    def topology(self) -> Topology:
        """The topology this client declares."""
        return self._topology

    @property
    def connected(self) -> bool:
        """True while the connection and its channels are usable."""
        link = self._link
        return link is not None and link.is_open

    def connect(self) -> None:
        """Connect to the first reachable URL in order and set up topology and channels.

        A no-op when already connected. Raises BrokerUnavailable (with every URL's reason) when none answers,
        BrokerError when the broker refuses the topology.
        """
        with self._api_lock:
            if self.connected:
                return
            self._drop_link()
            reasons: list[str] = []
            last: BrokerUnavailable | None = None
            for endpoint in self._endpoints:
                link = _Link(endpoint, on_dead=self._on_link_dead)
                try:
                    link.open(self._connect_timeout)
                    self._generation += 1
                    self._setup(link)
                except BrokerUnavailable as exc:
                    link.close()
                    reasons.append(str(exc))
                    last = exc
                    continue
                except BrokerError:
                    link.close()
                    raise
                self._link = link
                return
            raise BrokerUnavailable("no RabbitMQ broker reachable: " + "; ".join(reasons)) from last

    def ensure_connected(
        self,
        backoff: Backoff = Backoff(),
        *,
        stop: threading.Event | None = None,
        max_attempts: int | None = None,
    ) -> None:
        """Connect, retrying with jittered exponential backoff until it works, `stop` is set or attempts run
        out.

        Meant for the daemon loop after a BrokerUnavailable; a BrokerError that retrying cannot fix
        propagates.
        """
        for attempt in itertools.count(1):
            try:
                self.connect()
                return
            except BrokerUnavailable as exc:
                if max_attempts is not None and attempt >= max_attempts:
                    raise
                delay = backoff.delay(attempt)
                log.warning("RabbitMQ unavailable (attempt %d), retrying in %.1fs: %s", attempt, delay, exc)
                if stop is not None:
                    if stop.wait(delay):
                        raise BrokerUnavailable("stopped while waiting to reconnect to RabbitMQ") from exc
                else:
                    time.sleep(delay)

    def close(self) -> None:
        """Close the connection; a later `connect()` opens a new one."""
        with self._api_lock:
            self._drop_link()

    def __enter__(self) -> Self:
        self.connect()
        return self

    def __exit__(self, *_exc: object) -> None:
        self.close()

    # -- for subclasses --

    def _setup(self, link: _Link) -> None:
        raise NotImplementedError

    def _on_link_dead(self) -> None:
        """Called (any thread) when the link dies, to wake waiters."""

    def _drop_link(self) -> None:
        link, self._link = self._link, None
        if link is not None:
            link.close()

    def _live_link(self) -> _Link:
        link = self._link
        if link is None:
            raise BrokerUnavailable("not connected to RabbitMQ")
        failure = link.failure
        if failure is not None:
            failure.raise_()
        return link


# ----------------------------------------------------------------------------------------------------
# Publisher


class RabbitPublisher(_Client):
    """Publishes units of messages to the topology's exchange with streamed publisher confirms."""

    def __init__(
        self,
        urls: Sequence[str],
        *,
        topology: Topology = Topology(),
        window: int = 1000,
        heartbeat: int = 30,
        connect_timeout: float = 10.0,
        ssl_options: ssl.SSLContext | None = None,
        client_name: str = "dtn-bridge",
        external_auth: bool = False,
    ) -> None:
        if window < 1:
            raise ConfigError("broker.confirm_window", "must be at least 1")
        super().__init__(
            urls,
            topology=topology,
            heartbeat=heartbeat,
            connect_timeout=connect_timeout,
            ssl_options=ssl_options,
            client_name=client_name,
            external_auth=external_auth,
        )
        self._window = window
        self._channel: Channel | None = None
        # Shared between the caller and the I/O thread, guarded by _cond.
        self._cond = threading.Condition()
        self._inflight = 0  # handed to the I/O thread and not yet acked/nacked
        self._confirmed = 0
        self._rejections: list[Rejection] = []
        self._rejected_total = 0
        self._wake_at = -1  # the caller wants waking once _inflight drops to this
        # Owned by the I/O thread.
        self._next_tag = 0
        self._unconfirmed: dict[int, str] = {}  # delivery tag -> message id, in tag order

    def publish_all(self, messages: Iterable[OutgoingMessage], timeout: float = 60.0) -> PublishResult:
        """Publish every message (persistent, mandatory) and wait until the broker has confirmed all of them.

        Consumes `messages` lazily, never more than `window` unconfirmed. Raises PublishRejected
        (MessagesRejected)
        when a message is returned or nacked, after the in-flight ones are settled (no further messages
        are taken); BrokerUnavailable when the connection is lost or `timeout` passes; the caller retries
        the whole unit.
        """
        with self._api_lock:
            deadline = time.monotonic() + timeout
            self.connect()  # re-establishes a connection the broker closed while we were idle
            link = self._live_link()
            channel = self._channel
            assert channel is not None
            with self._cond:
                self._inflight = 0
                self._confirmed = 0
                self._rejections = []
                self._rejected_total = 0
            refill = max(1, min(_BATCH, self._window // 4))
            published = 0
            source = iter(messages)
            try:
                while True:
                    room = self._wait(link, deadline, until=self._window - refill)
                    if room is None:  # something was rejected: stop taking messages, settle the rest
                        break
                    batch = list(itertools.islice(source, min(room, _BATCH)))
                    if not batch:
                        break
                    with self._cond:
                        self._inflight += len(batch)
                    link.call(functools.partial(self._publish_batch, link, channel, batch))
                    published += len(batch)
                self._wait(link, deadline, until=0, drain=True)
            except BrokerError:
                raise
            except BaseException:
                # The iterable failed (or we were interrupted): confirms may still arrive for this channel,
                # so start over on a fresh connection next time.
                link.abort(_Failure(BrokerUnavailable, "publishing interrupted by the caller"))
                raise
            with self._cond:
                if self._rejections:
                    raise MessagesRejected(self._rejections, self._rejected_total)
                return PublishResult(published=published, confirmed=self._confirmed)

    def _wait(self, link: _Link, deadline: float, *, until: int, drain: bool = False) -> int | None:
        """Block until at most `until` messages are in flight; returns free slots (None: stop feeding)."""
        with self._cond:
            while True:
                failure = link.failure
                if failure is not None:
                    failure.raise_()
                if self._rejections and not drain:
                    return None
                if self._inflight <= until:
                    self._wake_at = -1
                    return self._window - self._inflight
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    failure = _Failure(
                        BrokerUnavailable,
                        f"publishing to {link.label} timed out with {self._inflight} message(s) unconfirmed",
                    )
                    link.abort(failure)
                    failure.raise_()
                self._wake_at = until
                self._cond.wait(min(remaining, 1.0))

    def _setup(self, link: _Link) -> None:
        channel = link.open_channel()
        _declare_topology(link, channel, self._topology)

        def confirm(done: Callable[[Any], None]) -> None:
            self._next_tag = 0
            self._unconfirmed = {}
            channel.add_on_return_callback(self._on_return)
            channel.confirm_delivery(self._on_confirm, callback=done)

        link.rpc("enabling publisher confirms", confirm)
        self._channel = channel

    def _on_link_dead(self) -> None:
        with self._cond:
            self._cond.notify_all()

    # -- I/O thread --

    def _publish_batch(self, link: _Link, channel: Channel, batch: list[OutgoingMessage]) -> None:
        link.doing(f"publishing to exchange {self._topology.exchange!r}")
        exchange = self._topology.exchange
        now = int(time.time())
        with link.coalesced():
            for message in batch:
                properties = pika.BasicProperties(
                    content_type=message.content_type,
                    delivery_mode=pika.DeliveryMode.Persistent,
                    message_id=message.message_id,
                    headers=dict(message.headers) if message.headers else None,
                    timestamp=now,
                )
                channel.basic_publish(exchange, message.routing_key, message.body, properties, mandatory=True)
                self._next_tag += 1
                self._unconfirmed[self._next_tag] = message.message_id

    def _on_confirm(self, frame: pika.frame.Method) -> None:
        method = frame.method
        tag: int = method.delivery_tag
        if method.multiple:
            tags = [t for t in itertools.takewhile(lambda t: tag == 0 or t <= tag, self._unconfirmed)]
        else:
            tags = [tag] if tag in self._unconfirmed else []
        ids = [self._unconfirmed.pop(t) for t in tags]
        nacked = isinstance(method, pika.spec.Basic.Nack)
        with self._cond:
            self._inflight -= len(ids)
            if nacked:
                for message_id in ids:
                    self._reject(
                        Rejection(
                            message_id, "nacked", "the broker refused it (queue full or internal error)"
                        )
                    )
            else:
                self._confirmed += len(ids)
            if nacked or self._inflight <= self._wake_at:
                self._cond.notify_all()

    def _on_return(
        self,
        _channel: Channel,
        method: pika.spec.Basic.Return,
        properties: pika.BasicProperties,
        _body: bytes,
    ) -> None:
        # A return always precedes the ack of the same message, so it is recorded before the unit settles.
        reason = (
            f"{method.reply_code} {method.reply_text}: no queue bound to exchange {method.exchange!r} "
            f"matches routing key {method.routing_key!r}"
        )
        with self._cond:
            self._reject(Rejection(properties.message_id or "<no message id>", "returned", reason))
            self._cond.notify_all()

    def _reject(self, rejection: Rejection) -> None:
        self._rejected_total += 1
        if len(self._rejections) < _MAX_KEPT_REJECTIONS:
            self._rejections.append(rejection)


# ----------------------------------------------------------------------------------------------------
# Consumer


_CLOSED = object()  # wakes a waiting `get` when the link dies


class RabbitConsumer(_Client):
    """Consumes a queue (by default the outbound one) with manual acks; rejects dead-letter with a reason."""

    def __init__(
        self,
        urls: Sequence[str],
        *,
        queue: str = "dtn.outbound",
        prefetch: int = 200,
        topology: Topology = Topology(),
        declare: bool = True,
        heartbeat: int = 30,
        connect_timeout: float = 10.0,
        ssl_options: ssl.SSLContext | None = None,
        client_name: str = "dtn-bridge-consumer",
        consumer_arguments: Mapping[str, Any] | None = None,
        external_auth: bool = False,
    ) -> None:
        """`consumer_arguments` go to basic.consume, e.g. {"x-stream-offset": datetime} to read a stream."""
        if prefetch < 1:
            raise ConfigError("rabbitmq.prefetch", "must be at least 1")
        super().__init__(
            urls,
            topology=topology,
            heartbeat=heartbeat,
            connect_timeout=connect_timeout,
            ssl_options=ssl_options,
            client_name=client_name,
            external_auth=external_auth,
        )
        self._queue = queue
        self._prefetch = prefetch
        self._declare = declare
        self._consumer_arguments = dict(consumer_arguments or {})
        self._buffer: queue_module.SimpleQueue[Any] = queue_module.SimpleQueue()
        self._consume_channel: Channel | None = None
        self._reject_channel: Channel | None = None
        # Owned by the I/O thread: the one reject copy awaiting its confirm.
        self._reject_future: Future[None] | None = None
        self._reject_returned: str | None = None

    def get(self, timeout: float | None = None) -> Delivery | None:
        """The next delivery, or None if none arrives within `timeout` seconds.

        Raises BrokerUnavailable once when the connection was lost (unacked deliveries will be redelivered);
        the next call reconnects.
        """
        with self._api_lock:
            if self._link is None:
                self.connect()
            self._check_alive()
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            remaining = None if deadline is None else max(0.0, deadline - time.monotonic())
            try:
                item = self._buffer.get(timeout=remaining)
            except queue_module.Empty:
                return None
            if item is _CLOSED:
                with self._api_lock:
                    self._check_alive()
                continue
            assert isinstance(item, Delivery)
            if item.generation == self._generation:
                return item
            # From a lost connection: the broker redelivers it, drop our copy.

    def deliveries(self, inactivity_timeout: float | None = None) -> Iterator[Delivery]:
        """Yield deliveries until none arrives for `inactivity_timeout` seconds (forever if None)."""
        while True:
            delivery = self.get(inactivity_timeout)
            if delivery is None:
                return
            yield delivery

    def ack(self, delivery: Delivery, *, multiple: bool = False) -> None:
        """Acknowledge `delivery` (and with `multiple`, every earlier one on this connection)."""
        with self._api_lock:
            link = self._link_for(delivery)
            channel = self._consume_channel
            assert channel is not None
            link.call(lambda: channel.basic_ack(delivery.delivery_tag, multiple=multiple))

    def reject(
        self, delivery: Delivery, reason_code: str, reason_text: str, *, timeout: float = 30.0
    ) -> None:
        """Dead-letter `delivery` with the reason in headers, then ack it.

        basic.reject cannot add headers, so a copy goes to the dead-letter exchange (routing key
        `topology.outbound_rejected_routing_key`) with `x-dtn-reject-code` / `x-dtn-reject-reason`, confirmed,
        and only then is the original acked. If anything fails the original stays unacked and is redelivered.
        """
        if not reason_code:
            raise ValueError("reason_code must not be empty")
        with self._api_lock:
            link = self._link_for(delivery)
            headers: dict[str, Any] = dict(delivery.headers)
            headers[REJECT_CODE_HEADER] = reason_code
            headers[REJECT_REASON_HEADER] = reason_text
            headers[ORIGINAL_ROUTING_KEY_HEADER] = delivery.routing_key
            properties = pika.BasicProperties(
                content_type=delivery.content_type,
                delivery_mode=pika.DeliveryMode.Persistent,
                message_id=delivery.message_id,
                headers=headers,
                timestamp=int(time.time()),
            )
            channel = self._reject_channel
            assert channel is not None
            exchange = self._topology.dead_letter_exchange
            routing_key = self._topology.outbound_rejected_routing_key

            def start(done: Callable[[Any], None]) -> None:
                fut: Future[None] = Future()
                fut.add_done_callback(lambda f: done(f.exception()))
                self._reject_future = fut
                self._reject_returned = None
                channel.basic_publish(exchange, routing_key, delivery.body, properties, mandatory=True)

            error = link.rpc(
                f"dead-lettering message {delivery.message_id!r} to {exchange!r}", start, timeout
            )
            if error is not None:
                raise error
            channel_c = self._consume_channel
            assert channel_c is not None
            link.call(lambda: channel_c.basic_ack(delivery.delivery_tag))

    def _check_alive(self) -> None:
        link = self._link
        if link is not None and link.failure is not None:
            self._link = None
            link.close()
            link.failure.raise_()

    def _link_for(self, delivery: Delivery) -> _Link:
        link = self._live_link()
        if delivery.generation != self._generation:
            raise BrokerUnavailable("the delivery came on a lost connection; the broker will redeliver it")
        return link

    def _setup(self, link: _Link) -> None:
        channel = link.open_channel()
        if self._declare:
            _declare_topology(link, channel, self._topology)
        generation = self._generation
        link.rpc(
            f"setting prefetch {self._prefetch}",
            lambda done: channel.basic_qos(prefetch_count=self._prefetch, callback=done),
        )

        def on_message(
            _ch: Channel, method: pika.spec.Basic.Deliver, props: pika.BasicProperties, body: bytes
        ) -> None:
            self._buffer.put(
                Delivery(
                    body=body,
                    headers=dict(props.headers or {}),
                    message_id=props.message_id,
                    routing_key=method.routing_key,
                    redelivered=bool(method.redelivered),
                    delivery_tag=method.delivery_tag,
                    content_type=props.content_type,
                    generation=generation,
                    timestamp=props.timestamp,
                )
            )

        def on_cancel(_frame: pika.frame.Method) -> None:
            link.abort(
                _Failure(BrokerUnavailable, f"the broker cancelled the consumer of queue {self._queue!r}")
            )

        def consume(done: Callable[[Any], None]) -> None:
            channel.add_on_cancel_callback(on_cancel)
            channel.basic_consume(self._queue, on_message, callback=done,
                                  arguments=self._consumer_arguments or None)

        link.rpc(f"consuming queue {self._queue!r}", consume)
        self._consume_channel = channel

        rejects = link.open_channel()

        def confirm(done: Callable[[Any], None]) -> None:
            rejects.add_on_return_callback(self._on_reject_return)
            rejects.confirm_delivery(self._on_reject_confirm, callback=done)

        link.rpc("enabling publisher confirms for rejects", confirm)
        self._reject_channel = rejects

    def _on_link_dead(self) -> None:
        self._buffer.put(_CLOSED)

    # -- I/O thread --

    def _on_reject_return(
        self, _channel: Channel, method: pika.spec.Basic.Return, _props: pika.BasicProperties, _body: bytes
    ) -> None:
        self._reject_returned = f"{method.reply_code} {method.reply_text}"

    def _on_reject_confirm(self, frame: pika.frame.Method) -> None:
        fut, self._reject_future = self._reject_future, None
        if fut is None or fut.done():
            return
        if isinstance(frame.method, pika.spec.Basic.Nack):
            fut.set_exception(PublishRejected("the dead-letter copy was nacked by the broker"))
        elif self._reject_returned is not None:
            fut.set_exception(
                PublishRejected(
                    f"the dead-letter copy was unroutable ({self._reject_returned}): no queue is bound to "
                    f"{self._topology.dead_letter_exchange!r} for "
                    f"{self._topology.outbound_rejected_routing_key!r}"
                )
            )
        else:
            fut.set_result(None)
