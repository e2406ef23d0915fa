"""The definitions document, without a broker: its shape, the topology it carries (the daemon's own `Topology`),
the password hashes, and which keys each participant's topic regexes admit (Python's re reads these regexes as
RabbitMQ's PCRE does: anchors, classes, alternation and escaped dots only). The broker itself: test_access.py."""

from __future__ import annotations

import base64
import hashlib
import json
import re

import pytest

from bridge.adapters.rabbitmq.definitions import (
    KeyPrefixes,
    ParticipantAccess,
    broker_definitions,
    password_hash,
    read_pattern,
    vhost_of,
    write_pattern,
)
from bridge.adapters.rabbitmq.topology import Topology

ABCD = ParticipantAccess("ABCD", "abcd", password_hash("s3cret", b"\x01\x02\x03\x04"))
EFGH = ParticipantAccess("EFGH", "CN=efgh", None, frozenset({"D0269", "D0270004"}))
NONE = ParticipantAccess("IJKL", "ijkl", None, frozenset())
PREFIXES = KeyPrefixes(("minimised.readings",), "test")


def admits(pattern: str, key: str) -> bool:
    return re.search(pattern, key) is not None  # RabbitMQ matches unanchored: the patterns anchor themselves


def test_password_hash_is_rabbitmqs_sha256_format() -> None:
    raw = base64.b64decode(password_hash("s3cret", b"\x01\x02\x03\x04"))
    assert raw[:4] == b"\x01\x02\x03\x04"
    assert raw[4:] == hashlib.sha256(b"\x01\x02\x03\x04s3cret").digest()
    assert password_hash("s3cret", b"\x01\x02\x03\x05") != password_hash("s3cret", b"\x01\x02\x03\x04")
    with pytest.raises(ValueError):
        password_hash("s3cret", b"\x01")


@pytest.mark.parametrize(("url", "vhost"), [
    ("amqp://guest:guest@127.0.0.1:5672/", "/"), ("amqp://127.0.0.1", "/"), ("amqps://h/%2F", "/"),
    ("amqp://h:5672/dtn", "dtn"), ("amqp://h/dtn%2Fprod", "dtn/prod")])
def test_vhost_of(url: str, vhost: str) -> None:
    assert vhost_of(url) == vhost


def test_document_carries_the_topology_and_no_password() -> None:
    topology = Topology().with_suffix(".x")
    document = broker_definitions(topology, "dtn", [ABCD, EFGH], prefixes=PREFIXES)
    assert [e["name"] for e in document["exchanges"]] == [spec.name for spec in topology.exchanges]
    assert [(q["name"], q["arguments"]) for q in document["queues"]] == [
        (spec.name, spec.arguments) for spec in topology.queues]
    assert [(b["source"], b["destination"], b["routing_key"]) for b in document["bindings"]] == [
        (spec.exchange, spec.queue, spec.routing_key) for spec in topology.bindings]
    assert {item["vhost"] for key in ("permissions", "topic_permissions", "exchanges", "queues", "bindings")
            for item in document[key]} == {"dtn"}
    assert document["users"] == [
        {"name": "abcd", "password_hash": ABCD.password_hash, "hashing_algorithm": "rabbit_password_hashing_sha256",
         "tags": []},
        {"name": "CN=efgh", "password_hash": "", "hashing_algorithm": "rabbit_password_hashing_sha256", "tags": []}]
    assert "s3cret" not in json.dumps(document)
    assert [t["exchange"] for t in document["topic_permissions"]] == ["dtn.events.x", "dtn.events.x"]


def test_vhost_permissions_reach_own_queues_and_the_exchange_only() -> None:
    permissions = broker_definitions(Topology(), "/", [ABCD])["permissions"][0]
    for name in ("p.ABCD.readings", "p.ABCD.x.y"):
        assert all(admits(permissions[kind], name) for kind in ("configure", "write", "read"))
    assert admits(permissions["read"], "dtn.events") and admits(permissions["write"], "dtn.events")
    assert not admits(permissions["configure"], "dtn.events")
    for name in ("dtn.events.store", "dtn.dead-letter", "dtn.outbound", "dtn.outbound.rejected", "p.EFGH.q",
                 "p.ABCD", "xp.ABCD.q", "amq.default", "amq.topic", "dtnxevents"):
        assert not any(admits(permissions[kind], name) for kind in ("configure", "write", "read")), name


@pytest.mark.parametrize(("participant", "key", "allowed"), [
    (ABCD, "inbound.D0010002.UDMS.ABCD", True),
    (ABCD, "inbound.*.*.ABCD", True),
    (ABCD, "inbound.#.#.ABCD", True),
    (ABCD, "file.received.D0010002.UDMS.ABCD", True),
    (ABCD, "minimised.readings.D0010002.UDMS.ABCD", True),
    (ABCD, "test.inbound.D0010002.UDMS.ABCD", True),
    (ABCD, "test.file.received.*.*.ABCD", True),
    (ABCD, "test.minimised.readings.*.*.ABCD", True),
    (ABCD, "inbound.*.*.broadcast", True),  # no list: every broadcast
    (ABCD, "inbound.D0010002.UDMS.EFGH", False),
    (ABCD, "inbound.D0010002.ABCD.EFGH", False),  # sent by it, addressed to another
    (ABCD, "inbound.*.*.*", False),
    (ABCD, "inbound.#", False),
    (ABCD, "#", False),
    (ABCD, "*.*.*.ABCD", False),
    (ABCD, "#.ABCD", False),
    (ABCD, "inbound.ABCD", False),
    (ABCD, "outbound.D0010002.EFGH.ABCD", False),
    (ABCD, "minimised.D0010002.UDMS.ABCD", False),
    (ABCD, "inboundxD0010002.UDMS.ABCD", False),
    (ABCD, "inbound.D0010002.UDMS.ABCDE", False),
    (EFGH, "inbound.D0269004.POOL.broadcast", True),
    (EFGH, "file.received.D0269002.*.broadcast", True),
    (EFGH, "inbound.D0270004.#.broadcast", True),
    (EFGH, "inbound.D0270002.POOL.broadcast", False),  # only that version
    (EFGH, "inbound.D0010002.UDMS.broadcast", False),
    (EFGH, "inbound.*.*.broadcast", False),
    (EFGH, "inbound.#.broadcast", False),
    (NONE, "inbound.D0269004.POOL.broadcast", False),
    (NONE, "inbound.D0269004.POOL.IJKL", True),
])
def test_read_admits_own_and_entitled_keys_only(participant: ParticipantAccess, key: str, allowed: bool) -> None:
    assert admits(read_pattern(participant, PREFIXES), key) is allowed


def test_without_test_routing_test_keys_are_not_granted() -> None:
    pattern = read_pattern(ABCD, KeyPrefixes((), None))
    assert admits(pattern, "inbound.D0010002.UDMS.ABCD")
    assert not admits(pattern, "test.inbound.D0010002.UDMS.ABCD")


@pytest.mark.parametrize(("key", "allowed"), [
    ("outbound.D0010002.ABCD.EFGH", True), ("outbound.D0010002.EFGH.ABCD", False),
    ("outbound.D0010002.ABCD", False), ("outbound.D0010002.ABCD.EFGH.x", False), ("outbound.rejected", False),
    ("inbound.D0010002.ABCD.EFGH", False), ("test.outbound.D0010002.ABCD.EFGH", False)])
def test_write_admits_itself_as_sender_only(key: str, allowed: bool) -> None:
    assert admits(write_pattern(ABCD), key) is allowed


def test_patterns_hold_no_braces() -> None:
    """RabbitMQ expands {username}, {vhost}... in topic patterns: a `{3}` quantifier must not be there."""
    document = broker_definitions(Topology(), "/", [ABCD, EFGH], prefixes=PREFIXES)
    assert not any("{" in t["read"] + t["write"] for t in document["topic_permissions"])
