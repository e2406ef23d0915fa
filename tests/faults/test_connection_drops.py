"""The broker closes every connection (`rabbitmqctl close_all_connections`) while the daemon publishes, and again
while it consumes and writes outbound files: nothing is lost, duplicates carry the same ids, and every outbound file
is written exactly once, byte for byte."""

from __future__ import annotations

import json
import signal
import subprocess
import time
from pathlib import Path
from typing import Any

from bridge.dtn.reader import FlowFileReader
from tests.e2e.conftest import Bridge, held_or_queued
from tests.e2e.test_inbound_daemon import corpus, expected_ids, split


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
        drops = 0
        deadline = time.monotonic() + 60
        # A close that lands between two files (the publisher idle) is mended by the next publish without a retry:
        # close again, while files are still flowing, until one has cut a publish short.
        while (drops < 3 or not log_events(bridge, "file_retry")) and drops < 8 and time.monotonic() < deadline:
            archived = len(bridge.archived())
            if archived >= len(files):
                break
            if archived:
                close_all_connections()
                drops += 1
                time.sleep(0.4)
            time.sleep(0.02)
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
        deadline = time.monotonic() + 60
        consume_drops = 0
        while consume_drops < 2 and time.monotonic() < deadline:
            if len(bridge.outbound_files()) < len(files):
                close_all_connections()
                consume_drops += 1
                time.sleep(1.0)
            time.sleep(0.05)
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
    deadline = time.monotonic() + 60
    while held_or_queued(outbound_queue) and time.monotonic() < deadline:  # acked, not only taken
        time.sleep(0.5)
    again.send_signal(signal.SIGTERM)
    assert again.wait(30) == 0
    bridge.assert_reproduced(files)
    assert bridge.admin.message_count(outbound_queue) == 0
    retries, interruptions = log_events(bridge, "file_retry"), log_events(bridge, "outbound_interrupted")
    assert retries >= 1 and interruptions >= 1, (retries, interruptions)
    print(f"{left} duplicates left queued at the stop; "
          f"{drops} closes while publishing ({retries} file retries), {consume_drops} while consuming "
          f"({interruptions} outbound interruptions); {routed} messages routed back")
