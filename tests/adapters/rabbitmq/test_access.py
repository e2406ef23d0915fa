"""Per-participant access against the real broker: `broker_definitions` imported with `rabbitmqctl
import_definitions` into a vhost of this test's own (users with unique names; all deleted afterwards), then each
participant logs in with its own password and tries what it may and may not do."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import tempfile
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import quote, urlsplit

import pika
import pika.exceptions
import pytest
from pika.adapters.blocking_connection import BlockingChannel

from bridge.adapters.rabbitmq.definitions import KeyPrefixes, ParticipantAccess, broker_definitions, password_hash
from bridge.adapters.rabbitmq.topology import Topology
from tests.helpers import wait_until

TOPOLOGY = Topology()


def _ctl(*args: str) -> None:
    result = subprocess.run(["rabbitmqctl", *args], capture_output=True, text=True, timeout=120, check=False)
    assert result.returncode == 0, f"rabbitmqctl {args[0]} failed: {result.stderr or result.stdout}"


@dataclass
class Access:
    """The imported vhost: a URL maker per user and the bridge's (guest's) own connection into the vhost."""

    vhost: str
    users: dict[str, str]  # MPID -> user name
    passwords: dict[str, str]  # MPID -> password (only for password users)
    base: str  # scheme://host:port

    def url(self, user: str, password: str) -> str:
        scheme, host = self.base.split("://")
        return f"{scheme}://{quote(user, safe='')}:{quote(password, safe='')}@{host}/{quote(self.vhost, safe='')}"

    def connect(self, mpid: str) -> pika.BlockingConnection:
        return pika.BlockingConnection(pika.URLParameters(self.url(self.users[mpid], self.passwords[mpid])))


@pytest.fixture(scope="module")
def access(amqp_url: str) -> Iterator[Access]:
    """One import for the module (rabbitmqctl takes seconds a call); each test names its queues uniquely."""
    tag = uuid.uuid4().hex[:10]
    vhost = f"dtn-access-{tag}"
    users = {"ABCD": f"abcd-{tag}", "EFGH": f"efgh-{tag}", "CERT": f"cert-{tag}"}
    passwords = {"ABCD": uuid.uuid4().hex, "EFGH": uuid.uuid4().hex}
    participants = [
        ParticipantAccess("ABCD", users["ABCD"], password_hash(passwords["ABCD"], os.urandom(4))),
        ParticipantAccess("EFGH", users["EFGH"], password_hash(passwords["EFGH"], os.urandom(4)),
                          frozenset({"D0010"})),
        ParticipantAccess("CERT", users["CERT"], None, frozenset()),
    ]
    document = broker_definitions(TOPOLOGY, vhost, participants,
                                  prefixes=KeyPrefixes(("minimised.readings",), "test"))
    split = urlsplit(amqp_url)
    # Debian's rabbitmqctl runs as the rabbitmq user (su): the file must be readable by it (hashes of test passwords)
    folder = Path(tempfile.mkdtemp(prefix="dtn-access-"))
    file = folder / "definitions.json"
    try:
        folder.chmod(0o755)
        file.write_text(json.dumps(document))
        file.chmod(0o644)
        _ctl("import_definitions", str(file))
        _ctl("set_permissions", "-p", vhost, split.username or "guest", ".*", ".*", ".*")  # the bridge's side
        yield Access(vhost, users, passwords, f"{split.scheme}://{split.hostname}:{split.port or 5672}")
    finally:
        subprocess.run(["rabbitmqctl", "delete_vhost", vhost], capture_output=True, timeout=120, check=False)
        for user in users.values():
            subprocess.run(["rabbitmqctl", "delete_user", user], capture_output=True, timeout=120, check=False)
        shutil.rmtree(folder, ignore_errors=True)


def _bridge(access: Access, amqp_url: str) -> pika.BlockingConnection:
    split = urlsplit(amqp_url)
    return pika.BlockingConnection(pika.URLParameters(access.url(split.username or "guest",
                                                                 split.password or "guest")))


def _refused(connection: pika.BlockingConnection, action: Callable[[BlockingChannel], object]) -> None:
    """`action` on a fresh channel is refused with ACCESS_REFUSED (403), which closes that channel only."""
    channel = connection.channel()
    with pytest.raises(pika.exceptions.ChannelClosedByBroker) as refused:
        action(channel)
        channel.basic_qos(prefetch_count=1)  # a round trip: an asynchronous refusal (publish) arrives by then
    assert refused.value.reply_code == 403, refused.value


def _own_queue(channel: BlockingChannel, mpid: str) -> str:
    queue = f"p.{mpid}.{uuid.uuid4().hex[:8]}"
    channel.queue_declare(queue, durable=False)  # deleted with the vhost
    return queue


def test_a_participant_binds_its_own_keys_and_nothing_else(access: Access) -> None:
    connection = access.connect("ABCD")
    try:
        channel = connection.channel()
        queue = _own_queue(channel, "ABCD")
        for key in ("inbound.*.*.ABCD", "inbound.D0010002.UDMS.ABCD", "file.received.*.*.ABCD",
                    "minimised.readings.*.*.ABCD", "test.inbound.*.*.ABCD", "test.file.received.#.#.ABCD",
                    "inbound.*.*.broadcast", "file.received.D0275001.*.broadcast"):
            channel.queue_bind(queue, TOPOLOGY.exchange, key)
        channel.queue_unbind(queue, TOPOLOGY.exchange, "inbound.*.*.ABCD")
        exchange = TOPOLOGY.exchange
        for key in ("inbound.*.*.EFGH", "#", "inbound.#", "inbound.*.*.*", "*.*.*.ABCD", "#.ABCD",
                    "outbound.#", "file.received.#", "other.inbound.*.*.ABCD", "inbound.*.ABCD.*"):
            _refused(connection, lambda ch, key=key: ch.queue_bind(queue, exchange, key))
    finally:
        connection.close()


def test_it_reads_neither_the_store_nor_the_bridges_queues_nor_anyone_elses(access: Access, amqp_url: str) -> None:
    bridge = _bridge(access, amqp_url)
    other = access.connect("EFGH")
    connection = access.connect("ABCD")
    try:
        others_queue = _own_queue(other.channel(), "EFGH")
        bridge.channel().basic_publish(TOPOLOGY.exchange, "inbound.D0010002.UDMS.EFGH", b"x")
        queue = _own_queue(connection.channel(), "ABCD")
        for name in (TOPOLOGY.store_queue, TOPOLOGY.outbound_queue, TOPOLOGY.outbound_rejected_queue, others_queue):
            assert name is not None
            _refused(connection, lambda ch, name=name: ch.basic_get(name))
            _refused(connection, lambda ch, name=name: ch.queue_purge(name))
            _refused(connection, lambda ch, name=name: ch.queue_delete(name))
        dead_letter = TOPOLOGY.dead_letter_exchange
        _refused(connection, lambda ch: ch.queue_bind(queue, dead_letter, "#"))
        _refused(connection, lambda ch: ch.queue_bind(queue, dead_letter, "inbound.*.*.ABCD"))
        _refused(connection, lambda ch: ch.queue_declare("p.EFGH.mine", auto_delete=True))  # another's name
        _refused(connection, lambda ch: ch.queue_declare("stolen", auto_delete=True))
        _refused(connection, lambda ch: ch.queue_declare(  # dead-lettering into the bridge's DLX
            "p.ABCD.dlx", auto_delete=True, arguments={"x-dead-letter-exchange": dead_letter}))
    finally:
        for each in (connection, other, bridge):
            each.close()


def test_it_publishes_only_as_itself(access: Access) -> None:
    connection = access.connect("ABCD")
    try:
        channel = connection.channel()
        channel.confirm_delivery()
        channel.basic_publish(TOPOLOGY.exchange, "outbound.D0010002.ABCD.EFGH", b"{}")  # confirmed
        exchange = TOPOLOGY.exchange
        for key in ("outbound.D0010002.EFGH.ABCD", "inbound.D0010002.ABCD.EFGH", "inbound.D0010002.UDMS.ABCD",
                    "outbound.D0010002.ABCD", "outbound.rejected"):
            _refused(connection, lambda ch, key=key: ch.basic_publish(exchange, key, b"{}"))
        _refused(connection, lambda ch: ch.basic_publish(TOPOLOGY.dead_letter_exchange, "outbound.rejected", b"{}"))
        _refused(connection, lambda ch: ch.basic_publish("", TOPOLOGY.outbound_queue or "", b"{}"))
    finally:
        connection.close()


def test_broadcasts_reach_every_entitled_participant_from_one_publish(access: Access, amqp_url: str) -> None:
    a, e, bridge = access.connect("ABCD"), access.connect("EFGH"), _bridge(access, amqp_url)
    try:
        a_channel, e_channel = a.channel(), e.channel()
        a_queue, e_queue = _own_queue(a_channel, "ABCD"), _own_queue(e_channel, "EFGH")
        a_channel.queue_bind(a_queue, TOPOLOGY.exchange, "inbound.*.*.broadcast")
        a_channel.queue_bind(a_queue, TOPOLOGY.exchange, "inbound.*.*.ABCD")
        e_channel.queue_bind(e_queue, TOPOLOGY.exchange, "inbound.D0010002.*.broadcast")
        e_channel.queue_bind(e_queue, TOPOLOGY.exchange, "file.received.D0010002.#.broadcast")
        exchange = TOPOLOGY.exchange
        _refused(e, lambda ch: ch.queue_bind(e_queue, exchange, "inbound.D0275001.*.broadcast"))  # not entitled
        _refused(e, lambda ch: ch.queue_bind(e_queue, exchange, "inbound.*.*.broadcast"))
        sender = bridge.channel()
        sender.confirm_delivery()
        for key in ("inbound.D0010002.UDMS.broadcast", "inbound.D0275001.UDMS.broadcast",
                    "inbound.D0010002.UDMS.ABCD", "file.received.D0010002.UDMS.broadcast"):
            sender.basic_publish(exchange, key, key.encode())

        def keys(channel: BlockingChannel, queue: str, count: int) -> list[str]:
            got: list[str] = []

            def take() -> bool:
                method, _properties, _body = channel.basic_get(queue, auto_ack=True)
                if method is not None:
                    got.append(method.routing_key)
                return len(got) >= count

            wait_until(take, 10, lambda: f"{queue} got {got}")
            return sorted(got)

        assert keys(a_channel, a_queue, 3) == ["inbound.D0010002.UDMS.ABCD", "inbound.D0010002.UDMS.broadcast",
                                               "inbound.D0275001.UDMS.broadcast"]
        assert keys(e_channel, e_queue, 2) == ["file.received.D0010002.UDMS.broadcast",
                                               "inbound.D0010002.UDMS.broadcast"]
        assert a_channel.queue_declare(a_queue, passive=True).method.message_count == 0
        assert e_channel.queue_declare(e_queue, passive=True).method.message_count == 0
    finally:
        for each in (a, e, bridge):
            each.close()


def test_passwords_log_in_and_a_certificate_user_has_no_password(access: Access) -> None:
    with pytest.raises(pika.exceptions.ProbableAuthenticationError):
        pika.BlockingConnection(pika.URLParameters(access.url(access.users["ABCD"], "wrong")))
    for attempt in ("", "guest", access.passwords["ABCD"]):
        with pytest.raises((pika.exceptions.ProbableAuthenticationError, pika.exceptions.AMQPConnectionError)):
            pika.BlockingConnection(pika.URLParameters(access.url(access.users["CERT"], attempt)))
    access.connect("ABCD").close()
    access.connect("EFGH").close()
