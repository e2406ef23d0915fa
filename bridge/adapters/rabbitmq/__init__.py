"""RabbitMQ adapter: the only package of dtn-bridge that imports pika; it implements the broker ports of
bridge/ports/ (`RabbitPublisher` is a `Publisher`, `RabbitConsumer` a `Consumer`).

Design (why it looks like this):

* pika is not thread-safe, and `BlockingConnection` services heartbeats only inside pika calls, so an idle
  or busy daemon would lose its connection. Each connection is therefore a `Link` (link.py): a `SelectConnection`
  owned by ONE I/O thread that runs the ioloop for the connection's whole life (heartbeats, confirms,
  returns, deliveries). Caller threads never touch pika objects; they hand closures to the I/O thread with
  `IOLoop.add_callback_threadsafe` and wait on a `Future` or a `Condition`.
* Publishing (publisher.py) streams confirms asynchronously (RabbitMQ's recommended strategy): the caller pulls
  messages lazily from the iterable in small batches while fewer than `window` are unconfirmed; the I/O thread
  settles delivery tags (including `multiple` acks). Waiting per message would be the "publish-and-wait"
  anti-pattern.
* pika exceptions never escape: they are translated into `bridge.errors` (`raise ... from exc`). Losing the
  connection is `BrokerUnavailable` (retry the unit; event ids are deterministic so duplicates are
  harmless), a nack or a return is `PublishRejected`, a broker refusal such as PRECONDITION_FAILED is a
  plain `BrokerError`.
* Nothing sensitive is logged: endpoints (endpoints.py) are shown as host:port/vhost, never the URL.

Modules: endpoints.py (URLs and settings -> connection parameters), link.py (one connection, one I/O thread),
client.py (failover, topology declaration, reconnect), publisher.py, consumer.py, topology.py (the plan, as data).
"""

from __future__ import annotations

from bridge.adapters.rabbitmq.consumer import (
    ORIGINAL_ROUTING_KEY_HEADER,
    REJECT_CODE_HEADER,
    REJECT_REASON_HEADER,
    RabbitConsumer,
)
from bridge.adapters.rabbitmq.endpoints import broker_endpoint_labels
from bridge.adapters.rabbitmq.publisher import RabbitPublisher
from bridge.adapters.rabbitmq.topology import Topology

__all__ = [
    "ORIGINAL_ROUTING_KEY_HEADER",
    "REJECT_CODE_HEADER",
    "REJECT_REASON_HEADER",
    "RabbitConsumer",
    "RabbitPublisher",
    "Topology",
    "broker_endpoint_labels",
]
