"""A three-node RabbitMQ cluster on this machine (nodes dtnc1-3@localhost, AMQP 5691-5693): the node the daemon is
connected to is stopped while files flow; the daemon fails over to the next node of `broker.urls` and nothing is lost.

The event store is a stream and `dtn.outbound` a quorum queue, both replicated on the three nodes, so losing one node
loses no confirmed message. The test reads what was published from a quorum queue of its own, on a surviving node.
"""

from __future__ import annotations

import fcntl
import json
import os
import signal
import tempfile
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from bridge.config import load_config
from bridge.dtn.reader import FlowFileReader
from bridge.events.manifest import MANIFEST_TYPE
from bridge.service import ensure_folders, topology_for
from bridge.signing import Signer, TrustStore
from bridge.signing.keys import write_private_key
from tests.conftest import EXAMPLES, Admin
from tests.e2e.conftest import Bridge, write_config
from tests.e2e.test_inbound_daemon import corpus, expected_ids
from tests.helpers import wait_until
from tests.rabbit_nodes import LocalNode

BASE = Path(tempfile.gettempdir()) / "dtn-bridge-cluster"
NAMES = ("dtnc1@localhost", "dtnc2@localhost", "dtnc3@localhost")


@pytest.fixture(scope="module")
def cluster() -> Iterator[list[LocalNode]]:
    """Three nodes sharing a cookie, booted at once, nodes 2 and 3 joined to node 1."""
    home = BASE / "home"
    BASE.mkdir(mode=0o700, exist_ok=True)
    lock = (BASE / "lock").open("w")
    fcntl.flock(lock, fcntl.LOCK_EX)  # one cluster per machine: another test session waits for this one
    nodes = [LocalNode(name, BASE / name.split("@")[0], amqp_port=5691 + n, dist_port=25691 + n, home=home)
             for n, name in enumerate(NAMES)]
    try:
        for node in nodes:
            node.prepare()
            node.configure([])
        for node in nodes:
            node.launch()
        for node in nodes:
            node.wait_started()
        for node in nodes[1:]:
            node.ctl("stop_app")
            node.ctl("join_cluster", NAMES[0], timeout=60)
            node.ctl("start_app", timeout=60)
        running = nodes[0].ctl("cluster_status", "--formatter", "json")
        assert sorted(json.loads(running.stdout)["running_nodes"]) == sorted(NAMES), running.stdout
        yield nodes
    finally:
        for node in reversed(nodes):
            node.stop()
        fcntl.flock(lock, fcntl.LOCK_UN)
        lock.close()


def connected_nodes(nodes: list[LocalNode], client_name: str) -> set[str]:
    """The nodes holding the daemon's connections (its publisher and its consumer), by the listener's port."""
    listed = nodes[1].ctl("list_connections", "port", "client_properties", "--formatter", "json", timeout=30)
    by_port = {node.amqp_port: node.name for node in nodes}
    found = {by_port[connection["port"]] for connection in json.loads(listed.stdout)
             if client_name in json.dumps(connection["client_properties"])}
    assert found, f"no connection named {client_name}: {listed.stdout[:2000]}"
    return found


def test_stopping_the_connected_node_loses_nothing(cluster: list[LocalNode], reader: FlowFileReader,
                                                   tmp_path: Path) -> None:
    """Files flow, node 1 (the daemon's) stops: the daemon goes on through node 2 or 3, every file is archived, every
    event reaches the capture queue with its own id, and the outbound side (a quorum queue) still writes files."""
    suffix = f".cluster-{uuid.uuid4().hex[:8]}"
    config_path = write_config(tmp_path, suffix, broker={"urls": [node.url for node in cluster]},
                               log={"level": "info"}, outbound={"prefetch": 1000, "batch_seconds": 1})
    (tmp_path / "keys").mkdir()
    signer = Signer.generate()
    write_private_key(tmp_path / "keys" / "bridge.key.pem", signer.private_key)
    (tmp_path / "keys" / "bridge.jwks.json").write_text(json.dumps(signer.public_jwks()))
    config = load_config(config_path)
    ensure_folders(config)
    topology = topology_for(config)
    admin = Admin(cluster[1].url)  # a survivor
    admin.channel.exchange_declare(topology.exchange, exchange_type="topic", durable=True)
    capture = f"capture{suffix}"
    admin.channel.queue_declare(capture, durable=True, arguments={"x-queue-type": "quorum"})
    admin.channel.queue_bind(capture, topology.exchange, "#")
    bridge = Bridge(tmp_path, config_path, topology, admin, capture, TrustStore.from_jwks(signer.public_jwks()))
    files = corpus(tmp_path / "corpus", reader.definitions, files=12, instances=600)
    examples = sorted(EXAMPLES.glob("*.txt"))[:3]
    process = bridge.start_process()
    try:
        bridge.wait_running(process, timeout=60)
        assert connected_nodes(cluster, "dtn-bridge") == {NAMES[0]}  # the first URL
        for path in files:
            bridge.drop(path)
        wait_until(lambda: bridge.archived(), 60, "no file was archived through node 1", interval=0.02)
        assert len(bridge.archived()) < len(files), "node 1 must stop while files are still flowing"
        cluster[0].ctl("stop_app", timeout=60)
        try:
            bridge.wait_settled(len(files), timeout=180)
            assert connected_nodes(cluster, "dtn-bridge") <= set(NAMES[1:])
            events, manifests = split_events(admin.read_all(capture))
            assert {event["id"] for event in events} == set(expected_ids(files, reader))  # duplicates: same ids
            assert len({manifest["id"] for manifest in manifests}) == len(files)
            for event in events:
                bridge.trust.verify(event)

            for path in examples:  # the outbound consumer must have found a survivor too
                bridge.drop(path)
            bridge.wait_settled(len(files) + len(examples), timeout=60)
            assert bridge.route_back() > 0
            bridge.stop_when_written(process, len(examples))
        finally:
            cluster[0].ctl("start_app", timeout=120)
    finally:
        if process.poll() is None:
            os.kill(process.pid, signal.SIGKILL)
            process.wait(10)
    bridge.assert_reproduced(examples)
    assert len(bridge.archived()) == len(files) + len(examples) and bridge.quarantined() == []
    retries = (tmp_path / "daemon.log").read_text().count('"file_retry"')
    print(f"{len(files)} files, {len(events)} events captured after failover; {retries} file retries")


def split_events(read: list[tuple[Any, Any, bytes]]) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    decoded = [json.loads(body) for _method, _props, body in read]
    return ([event for event in decoded if event["type"] != MANIFEST_TYPE],
            [event for event in decoded if event["type"] == MANIFEST_TYPE])
