"""The publisher port on RabbitMQ: units of messages to the topology's exchange, with streamed publisher confirms."""

from __future__ import annotations

import functools
import itertools
import ssl
import threading
import time
from collections.abc import Callable, Iterable, Sequence
from typing import Any

import pika
import pika.frame
import pika.spec
from pika.channel import Channel

from bridge.adapters.rabbitmq.client import Client, declare_topology
from bridge.adapters.rabbitmq.link import Failure, Link
from bridge.adapters.rabbitmq.topology import Topology
from bridge.errors import BrokerError, BrokerUnavailable, ConfigError
from bridge.ports import BrokerRefusal, MessagesRejected, OutgoingMessage, PublishResult

# Messages handed to the I/O thread per closure: large enough to amortise the wake-up, small enough to
# keep the ioloop responsive (heartbeats, acks) while it publishes.
_BATCH = 200
_MAX_KEPT_REJECTIONS = 100


class RabbitPublisher(Client):
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
        self._rejections: list[BrokerRefusal] = []
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
                link.abort(Failure(BrokerUnavailable, "publishing interrupted by the caller"))
                raise
            with self._cond:
                if self._rejections:
                    raise MessagesRejected(self._rejections, self._rejected_total)
                return PublishResult(published=published, confirmed=self._confirmed)

    def _wait(self, link: Link, deadline: float, *, until: int, drain: bool = False) -> int | None:
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
                    failure = Failure(
                        BrokerUnavailable,
                        f"publishing to {link.label} timed out with {self._inflight} message(s) unconfirmed",
                    )
                    link.abort(failure)
                    failure.raise_()
                self._wake_at = until
                self._cond.wait(min(remaining, 1.0))

    def _setup(self, link: Link) -> None:
        channel = link.open_channel()
        declare_topology(link, channel, self._topology)

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

    def _publish_batch(self, link: Link, channel: Channel, batch: list[OutgoingMessage]) -> None:
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
                        BrokerRefusal(
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
            self._reject(BrokerRefusal(properties.message_id or "<no message id>", "returned", reason))
            self._cond.notify_all()

    def _reject(self, rejection: BrokerRefusal) -> None:
        self._rejected_total += 1
        if len(self._rejections) < _MAX_KEPT_REJECTIONS:
            self._rejections.append(rejection)
