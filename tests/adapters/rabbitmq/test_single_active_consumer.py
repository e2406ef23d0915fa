"""`outbound.single_active_consumer`: the outbound queue with x-single-active-consumer, against the real broker. Of
two consumers (the daemons of a pair) one gets every message; when it goes, the other gets what it left unacked,
flagged redelivered. A queue declared without the argument is refused with the key and what to do."""

from __future__ import annotations

from dataclasses import replace

import pytest

from bridge.adapters.rabbitmq import RabbitConsumer, RabbitPublisher, Topology
from bridge.errors import BrokerError
from tests.adapters.rabbitmq.rabbit_helpers import Admin, messages


def consumer(amqp_url: str, topology: Topology, name: str) -> RabbitConsumer:
    assert topology.outbound_queue is not None
    return RabbitConsumer([amqp_url], queue=topology.outbound_queue, prefetch=10, topology=topology,
                          client_name=name, connect_timeout=5.0)


def test_the_arguments() -> None:
    assert "x-single-active-consumer" not in Topology().queues[2].arguments
    sac = Topology(outbound_single_active_consumer=True)
    outbound = next(q for q in sac.queues if q.name == "dtn.outbound")
    assert outbound.arguments["x-single-active-consumer"] is True
    assert all("x-single-active-consumer" not in q.arguments for q in sac.queues if q.name != "dtn.outbound")


def test_one_consumer_at_a_time_and_the_standby_takes_over(amqp_url: str, topology: Topology, client_name: str,
                                                           admin: Admin) -> None:
    sac = replace(topology, outbound_single_active_consumer=True)
    active, standby = consumer(amqp_url, sac, f"{client_name}-a"), consumer(amqp_url, sac, f"{client_name}-b")
    publisher = RabbitPublisher([amqp_url], topology=sac, client_name=f"{client_name}-p", connect_timeout=5.0)
    try:
        active.connect()  # the first consumer is the active one
        standby.connect()
        publisher.connect()
        publisher.publish_all(messages(6, routing_key="outbound.x", prefix="m"))
        got = list(active.deliveries(inactivity_timeout=5))
        assert [d.message_id for d in got] == [f"m-{n}" for n in range(6)]
        assert standby.get(1.0) is None  # the scenario: it waits while the active one consumes
        active.ack(got[1], multiple=True)
        active.close()  # it dies with four unacked: they go to the standby
        taken = [standby.get(10.0) for _ in range(4)]
        assert [d.message_id if d else None for d in taken] == [f"m-{n}" for n in range(2, 6)]
        assert all(d is not None and d.redelivered for d in taken)
        last = taken[-1]
        assert last is not None
        standby.ack(last, multiple=True)
    finally:
        for client in (active, standby, publisher):
            client.close()
    assert admin.message_count(sac.outbound_queue or "") == 0


def test_an_existing_queue_without_it_is_refused_with_what_to_do(amqp_url: str, topology: Topology,
                                                                 client_name: str, admin: Admin) -> None:
    plain = RabbitPublisher([amqp_url], topology=topology, client_name=f"{client_name}-p", connect_timeout=5.0)
    plain.connect()  # the queue as it was declared before the upgrade
    plain.close()
    sac = consumer(amqp_url, replace(topology, outbound_single_active_consumer=True), client_name)
    with pytest.raises(BrokerError) as info:
        sac.connect()
    sac.close()
    message = str(info.value)
    assert "PRECONDITION_FAILED" in message and "x-single-active-consumer" in message
    assert "outbound.single_active_consumer must match the existing queue" in message
    assert "docs/operations.md" in message
