"""What the publisher and the consumer share: failover connect over the URLs in order, declaring the topology,
reconnecting with backoff, closing. Each subclass opens its own channels in `_setup`."""

from __future__ import annotations

import itertools
import logging
import ssl
import threading
import time
from collections.abc import Callable, Sequence
from typing import Any, Self

from pika.channel import Channel

from bridge.adapters.rabbitmq.endpoints import parse_endpoints
from bridge.adapters.rabbitmq.link import Link
from bridge.adapters.rabbitmq.topology import Topology
from bridge.errors import BrokerError, BrokerUnavailable
from bridge.ports import Backoff

log = logging.getLogger(__name__)


def _with_callback(
    fn: Callable[..., Any], *args: Any, **kwargs: Any
) -> Callable[[Callable[[Any], None]], None]:
    """Adapt a pika method taking `callback=` to the `start(done)` shape of `Link.rpc`."""

    def start(done: Callable[[Any], None]) -> None:
        fn(*args, callback=done, **kwargs)

    return start


def declare_topology(link: Link, channel: Channel, topology: Topology) -> None:
    """Declare exchanges, queues, bindings; idempotent; a mismatch names the object (PRECONDITION_FAILED)."""
    for ex in topology.exchanges:
        link.rpc(
            f"declaring exchange {ex.name!r} ({ex.type}, durable)",
            _with_callback(channel.exchange_declare, ex.name, exchange_type=ex.type, durable=ex.durable),
        )
    for q in topology.queues:
        args = ", ".join(f"{k}={v}" for k, v in q.arguments.items())
        try:
            link.rpc(
                f"declaring queue {q.name!r} ({args})",
                _with_callback(channel.queue_declare, q.name, durable=q.durable, arguments=dict(q.arguments)),
            )
        except BrokerUnavailable:
            raise
        except BrokerError as exc:
            if "inequivalent arg" not in str(exc):
                raise
            raise BrokerError(f"{exc}; the queue exists with the arguments of an earlier version or configuration: "
                              "see 'Upgrading the broker topology' in docs/operations.md") from exc
    for b in topology.bindings:
        link.rpc(
            f"binding queue {b.queue!r} to exchange {b.exchange!r} with {b.routing_key!r}",
            _with_callback(channel.queue_bind, b.queue, b.exchange, routing_key=b.routing_key),
        )


class Client:
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
        self._endpoints = parse_endpoints(urls, heartbeat=heartbeat, connect_timeout=connect_timeout,
                                     ssl_context=ssl_options, client_name=client_name, external_auth=external_auth)
        self._topology = topology
        self._connect_timeout = connect_timeout
        self._api_lock = threading.RLock()
        self._link: Link | None = None
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
                link = Link(endpoint, on_dead=self._on_link_dead)
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

    def _setup(self, link: Link) -> None:
        raise NotImplementedError

    def _on_link_dead(self) -> None:
        """Called (any thread) when the link dies, to wake waiters."""

    def _drop_link(self) -> None:
        link, self._link = self._link, None
        if link is not None:
            link.close()

    def _live_link(self) -> Link:
        link = self._link
        if link is None:
            raise BrokerUnavailable("not connected to RabbitMQ")
        failure = link.failure
        if failure is not None:
            failure.raise_()
        return link
