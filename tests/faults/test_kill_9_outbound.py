"""SIGKILL the daemon at random moments while it writes outbound files, restart it, again and again: every source
file is written exactly once, byte for byte, with no temporary file left and nothing dead-lettered.

The events come from the daemon itself (a corpus dropped, published and routed back to `outbound.#`), so this is the
whole chain; the crash points of the writer's protocol, one by one, are in tests/outbound/test_outbound_crash.py.
"""

from __future__ import annotations

import contextlib
import os
import random
import signal
import time
from pathlib import Path
from typing import Any

from bridge.dtn.reader import FlowFileReader
from tests.e2e.conftest import Bridge, held_or_queued
from tests.e2e.test_inbound_daemon import corpus
from tests.helpers import wait_until

KILLS = 5


def test_kill_9_while_writing_outbound_files(make_bridge: Any, reader: FlowFileReader,
                                             tmp_path: Path) -> None:
    files = corpus(tmp_path / "corpus", reader.definitions, files=10, instances=400)
    # Each source file is reproduced whole when its events fit the window and gather within batch_seconds.
    bridge: Bridge = make_bridge(outbound={"prefetch": 10 * 400 + 500, "batch_seconds": 30}, log={"level": "info"})
    process = bridge.run_files(files)
    process.send_signal(signal.SIGTERM)
    assert process.wait(30) == 0
    assert bridge.route_back() >= 10 * 400 + 10  # queued for the outbound side while no daemon runs
    outbound_queue = bridge.topology.outbound_queue or ""

    rng = random.Random(11)
    kills_mid_writing = 0
    for _ in range(KILLS):
        before = len(bridge.outbound_files())
        process = bridge.start_process()
        bridge.wait_running(process)
        # writing has begun; a later round may find every file written already (such a kill is not counted)
        with contextlib.suppress(AssertionError):
            wait_until(lambda: len(bridge.outbound_files()) > before, 30, interval=0.01)  # noqa: B023 - called at once
        time.sleep(rng.uniform(0.0, 0.2))  # the scenario: a kill at a random moment of the writing
        os.kill(process.pid, signal.SIGKILL)
        process.wait(10)
        kills_mid_writing += before < len(bridge.outbound_files()) < len(files)
    assert kills_mid_writing >= 3, "the daemon must be killed between outbound files, with more still to write"

    process = bridge.start_process()
    bridge.wait_running(process)
    try:
        wait_until(lambda: len(bridge.outbound_files()) >= len(files) and not held_or_queued(outbound_queue), 90,
                   lambda: f"{len(bridge.outbound_files())} of {len(files)} files written")
    finally:
        process.send_signal(signal.SIGTERM)
        assert process.wait(30) == 0
    bridge.assert_reproduced(files)  # each exactly once: a second copy would be an extra file
    assert sorted(bridge.outbound_folder.iterdir()) == bridge.outbound_files(), "a temporary file was left in outbound"
    assert bridge.admin.message_count(bridge.topology.outbound_rejected_queue or "") == 0
    assert held_or_queued(outbound_queue) == 0
    print(f"{KILLS} SIGKILLs, {kills_mid_writing} while outbound files were still to be written; "
          f"story: {bridge.outbound_story()}")
