"""An active/standby pair: two daemons (two state and processing folders; one inbound, outbound, archive and shared
state folder; one broker) as real processes. SIGKILL the active one while it writes outbound files: the standby takes
over (single active consumer) and every source file comes out exactly once, byte for byte. Inbound, each file dropped
is published by exactly one of them."""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from bridge.dtn.reader import FlowFileReader
from tests.e2e.conftest import Bridge, held_or_queued, write_config
from tests.e2e.test_inbound_daemon import corpus, expected_ids, split
from tests.helpers import wait_until

FILES = 12
INSTANCES = 200
PAIR = {"single_active_consumer": True, "shared_state": "var/pair"}


@pytest.fixture
def make_pair(make_bridge: Any) -> Iterator[Any]:
    """Two bridges of a pair: `a` as make_bridge builds it, `b` beside it (under <root>/b) sharing a's inbound,
    archive, quarantine, outbound and shared state folders, keys and broker objects, with its own state and
    processing folders. Kills what `b` started afterwards (make_bridge does it for `a`)."""
    made: list[Bridge] = []

    def make(**overrides: Any) -> tuple[Bridge, Bridge]:
        outbound = {**PAIR, **overrides.pop("outbound", {})}
        a: Bridge = make_bridge(outbound=outbound, **overrides)
        var = a.root / "var"
        shared = {
            "watch": {"inbound": str(a.inbound)},
            "spool": {"processing": "var/processing", "archive": str(var / "archive"),
                      "quarantine": str(var / "quarantine")},
            "signing": {"key": str(a.root / "keys" / "bridge.key.pem"),
                        "trust": str(a.root / "keys" / "bridge.jwks.json")},
            "outbound": {**outbound, "folder": str(a.outbound_folder), "shared_state": str(var / "pair")},
        }
        for section, values in overrides.items():
            shared[section] = {**values, **shared.get(section, {})}
        root = a.root / "b"
        root.mkdir()
        b = Bridge(root, write_config(root, a.config.broker.topology_suffix, **shared), a.topology, a.admin,
                   a.capture, a.trust)
        made.append(b)
        return a, b

    yield make
    for bridge in made:
        bridge.kill_processes()


def consumers(queue: str) -> int:
    """Consumers registered on `queue`, active or waiting (`rabbitmqctl list_queues name consumers`: a quorum
    queue's declare-ok counts only the active one)."""
    listed = subprocess.run(["rabbitmqctl", "-q", "list_queues", "name", "consumers"], check=True,
                            capture_output=True, text=True, timeout=60).stdout
    counts = dict(line.split("\t") for line in listed.splitlines() if "\t" in line)
    return int(counts.get(queue, 0))


def written_by(bridge: Bridge) -> int:
    """How many outbound files this daemon's log says it wrote."""
    log = bridge.root / "daemon.log"
    lines = log.read_text().splitlines() if log.exists() else []
    return sum(1 for line in lines if line.startswith("{") and json.loads(line).get("event") == "outbound_file_written")


def test_sigkill_the_active_one_mid_way_the_standby_finishes(make_pair: Any, reader: FlowFileReader,
                                                             tmp_path: Path) -> None:
    files = corpus(tmp_path / "corpus", reader.definitions, files=FILES, instances=INSTANCES)
    first, later = files[:FILES // 2], files[FILES // 2:]  # routed back before the kill, and after it
    # Each source file is reproduced whole when its events fit the window and gather within batch_seconds.
    a, b = make_pair(outbound={"prefetch": FILES * INSTANCES + 500, "batch_seconds": 30, "workers": 0},
                     inbound={"workers": 0}, log={"level": "info"})
    queue = a.topology.outbound_queue or ""
    active = a.start_process()
    a.wait_running(active)
    wait_until(lambda: consumers(queue) == 1, 30, "the first daemon's consumer did not register")
    standby = b.start_process()
    b.wait_running(standby)
    wait_until(lambda: consumers(queue) == 2, 30, "the standby's consumer did not register")
    for path in first:
        a.drop(path)
    a.wait_settled(len(first))
    assert a.route_back() == len(first) * (INSTANCES + 1)  # to outbound.#, both daemons running

    wait_until(lambda: len(a.outbound_files()) >= 2, 60, lambda: f"{len(a.outbound_files())} files written")
    time.sleep(random.Random(7).uniform(0.0, 0.2))  # the scenario: a kill at a random moment of the writing
    os.kill(active.pid, signal.SIGKILL)
    active.wait(10)
    at_kill = len(a.outbound_files())
    assert written_by(b) == 0, "the standby wrote while the other was active"

    for path in later:  # the standby, alone now, takes these in and writes them out
        a.drop(path)
    a.wait_settled(len(files))
    assert a.route_back() == len(later) * (INSTANCES + 1)
    wait_until(lambda: len(a.outbound_files()) >= FILES and held_or_queued(queue) == 0, 120,
               lambda: f"{len(a.outbound_files())} of {FILES} files written; log: {b.outbound_story()}")
    assert written_by(b) >= len(later), "the standby did not take over"
    restarted = a.start_process()  # the killed one comes back as the standby: its recovery agrees
    a.wait_running(restarted)
    wait_until(lambda: consumers(queue) == 2, 30, "the restarted daemon's consumer did not register")
    for process in (restarted, standby):
        process.send_signal(signal.SIGTERM)
        assert process.wait(30) == 0
    a.assert_reproduced(files)  # each exactly once, byte for byte: a second copy would be an extra file
    assert sorted(a.outbound_folder.iterdir()) == a.outbound_files(), "a temporary file was left in outbound"
    a.admin.reconnect()
    assert a.admin.message_count(a.topology.outbound_rejected_queue or "") == 0
    assert held_or_queued(queue) == 0
    print(f"killed the active daemon with {at_kill} of {len(first)} files written; it wrote {written_by(a)}, "
          f"the standby {written_by(b)}; story: {b.outbound_story()}")


def test_each_inbound_file_published_by_exactly_one_of_the_pair(make_pair: Any, reader: FlowFileReader,
                                                                tmp_path: Path) -> None:
    files = corpus(tmp_path / "corpus", reader.definitions, files=40, instances=5)
    a, b = make_pair(inbound={"workers": 0}, outbound={"workers": 0}, log={"level": "info"})
    processes = [a.start_process(), b.start_process()]
    for bridge, process in zip((a, b), processes, strict=True):
        bridge.wait_running(process)
    for path in files:
        a.drop(path)
    try:
        a.wait_settled(len(files), timeout=120)
    finally:
        for process in processes:
            process.send_signal(signal.SIGTERM)
            assert process.wait(30) == 0
    events, manifests = split(a.captured())
    ids = Counter(event["id"] for event in events)
    assert set(ids) == set(expected_ids(files, reader)) and set(ids.values()) == {1}  # each event once
    assert len(manifests) == len(files) and len({m["id"] for m in manifests}) == len(files)
    assert sorted(p.name for p in a.archived()) == sorted(p.name for p in files)  # each archived once
    assert a.quarantined() == [] and not list(a.inbound.iterdir())
    for bridge in (a, b):
        assert not [p for p in bridge.folder("processing").iterdir()], "a claim was left behind"
    archived_by = {bridge.root.name: (bridge.root / "daemon.log").read_text().count("\"outcome\": \"archived\"")
                   for bridge in (a, b)}
    print(f"files archived by each daemon: {archived_by}")

