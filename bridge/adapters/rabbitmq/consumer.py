"""The consumer port on RabbitMQ: one queue with manual acks; a reject dead-letters a copy carrying the reason."""

from __future__ import annotations

import queue as queue_module
import ssl
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from concurrent.futures import Future
from typing import Any

import pika
import pika.frame
import pika.spec
from pika.channel import Channel

from bridge.adapters.rabbitmq.client import Client, declare_topology
from bridge.adapters.rabbitmq.link import Failure, Link
from bridge.adapters.rabbitmq.topology import Topology
from bridge.errors import BrokerUnavailable, ConfigError, PublishRejected
from bridge.ports import Delivery

REJECT_REASON_HEADER = "x-dtn-reject-reason"
REJECT_CODE_HEADER = "x-dtn-reject-code"
ORIGINAL_ROUTING_KEY_HEADER = "x-dtn-original-routing-key"


_CLOSED = object()  # wakes a waiting `get` when the link dies


class RabbitConsumer(Client):
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
            raise ConfigError("outbound.prefetch", "must be at least 1")
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

    def _link_for(self, delivery: Delivery) -> Link:
        link = self._live_link()
        if delivery.generation != self._generation:
            raise BrokerUnavailable("the delivery came on a lost connection; the broker will redeliver it")
        return link

    def _setup(self, link: Link) -> None:
        channel = link.open_channel()
        if self._declare:
            declare_topology(link, channel, self._topology)
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
                Failure(BrokerUnavailable, f"the broker cancelled the consumer of queue {self._queue!r}")
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
