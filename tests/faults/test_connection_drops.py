"""The broker closes every connection (`rabbitmqctl close_all_connections`) while the daemon publishes, and again
while it consumes and writes outbound files: nothing is lost, duplicates carry the same ids, and every outbound file
is written exactly once, byte for byte."""

from __future__ import annotations

import json
import signal
import subprocess
from pathlib import Path
from typing import Any

from bridge.dtn.reader import FlowFileReader
from tests.e2e.conftest import Bridge, held_or_queued
from tests.e2e.test_inbound_daemon import corpus, expected_ids, split
from tests.helpers import wait_until


def close_all_connections() -> None:
    subprocess.run(["rabbitmqctl", "close_all_connections", "dtn-bridge test: the server closes connections"],
                   check=True, capture_output=True, timeout=60)


def log_events(bridge: Bridge, name: str) -> int:
    lines = (bridge.root / "daemon.log").read_text().splitlines()
    return sum(1 for line in lines if line.startswith("{") and json.loads(line).get("event") == name)


def test_server_side_closes_during_publish_and_during_consume(make_bridge: Any, reader: FlowFileReader,
                                                               tmp_path: Path) -> None:
    # Every file comes back byte for byte when no source file is ever given up to a batch: batch_seconds outlasts
    # any redelivery, and the prefetch window holds the whole corpus, whatever order a closed connection's deliveries
    # come back in (duplicates from file retries take no place in it).
    count, instances = 10, 800
    bridge: Bridge = make_bridge(outbound={"prefetch": count * instances + 600, "batch_seconds": 30},
                                 log={"level": "info"})
    routable = bridge.admin.probe_queue(bridge.topology.exchange, "#", durable=True)  # kept to route back later
    files = corpus(tmp_path / "corpus", reader.definitions, files=count, instances=instances)
    process = bridge.start_process()
    try:
        bridge.wait_running(process)
        for path in files:
            bridge.drop(path)
        wait_until(lambda: bridge.archived(), 60, "no file was archived", interval=0.02)  # files are flowing
        drops = 0
        # A close that lands between two files (the publisher idle) is mended by the next publish without a retry:
        # close again, while files are still flowing, until one has cut a publish short.
        while (drops < 3 or not log_events(bridge, "file_retry")) and drops < 8:
            archived, connects = len(bridge.archived()), log_events(bridge, "broker_connected")
            if archived >= len(files):
                break
            close_all_connections()
            drops += 1
            # The next close once the daemon reconnected (after a cut publish) or settled another file (after an
            # idle close), not after a fixed pause: each close then lands on a daemon that is publishing again.
            wait_until(lambda before=archived, connected=connects: len(bridge.archived()) > before
                       or log_events(bridge, "broker_connected") > connected,
                       30, "after a close the daemon neither reconnected nor settled a file")
        assert drops >= 2 and log_events(bridge, "file_retry"), \
            f"the connections must be closed while files are still being published ({drops} closes, none did)"
        bridge.admin.reconnect()
        bridge.wait_settled(len(files), timeout=180)
        events, manifests = split(bridge.captured())
        assert {event["id"] for event in events} == set(expected_ids(files, reader))  # duplicates: same ids
        assert len({manifest["id"] for manifest in manifests}) == len(files)
        for event in events:
            bridge.trust.verify(event)
        assert bridge.quarantined() == []

        bridge.capture = routable  # now send every event back to outbound.#, and close connections while it writes
        routed = bridge.route_back()
        consume_drops = 0
        while consume_drops < 2 and len(bridge.outbound_files()) < len(files):
            resumed = log_events(bridge, "outbound_resumed")
            close_all_connections()
            consume_drops += 1
            # the next close once the outbound loop is consuming again (was: a fixed second)
            wait_until(lambda before=resumed: log_events(bridge, "outbound_resumed") > before
                       or len(bridge.outbound_files()) >= len(files), 60,
                       "after a close the outbound loop neither resumed nor wrote every file")
        bridge.admin.reconnect()
        bridge.stop_when_written(process, len(files), timeout=120)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait(10)
    bridge.assert_reproduced(files)
    assert bridge.admin.message_count(bridge.topology.outbound_rejected_queue or "") == 0
    # The daemon was stopped as soon as every file was written; deliveries still queued then can only be duplicates
    # (a retried file republishes its events): a restarted daemon acks them all and writes nothing more.
    outbound_queue = bridge.topology.outbound_queue or ""
    left = held_or_queued(outbound_queue)
    again = bridge.start_process()
    bridge.wait_running(again)
    wait_until(lambda: not held_or_queued(outbound_queue), 60, "the restarted daemon left deliveries unacked",
               interval=0.5)  # acked, not only taken
    again.send_signal(signal.SIGTERM)
    assert again.wait(30) == 0
    bridge.assert_reproduced(files)
    assert bridge.admin.message_count(outbound_queue) == 0
    retries, interruptions = log_events(bridge, "file_retry"), log_events(bridge, "outbound_interrupted")
    assert retries >= 1 and interruptions >= 1, (retries, interruptions)
    print(f"{left} duplicates left queued at the stop; "
          f"{drops} closes while publishing ({retries} file retries), {consume_drops} while consuming "
          f"({interruptions} outbound interruptions); {routed} messages routed back")
