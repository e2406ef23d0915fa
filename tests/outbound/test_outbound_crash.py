"""kill -9 at every moment of the write protocol, then restart: every event in exactly one visible file, no
partial file ever under a final name, no temporary file left behind."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from collections import Counter
from pathlib import Path
from typing import Any

import orjson
import pytest

from bridge.adapters.ledger import Ledger
from bridge.adapters.rabbitmq import RabbitPublisher
from bridge.adapters.rabbitmq.topology import Topology
from bridge.dtn.reader import FlowFileReader
from bridge.signing import Signer
from tests.conftest import EXAMPLES, REPO, Admin
from tests.helpers import wait_until
from tests.outbound.outbound_helpers import message, meter_ids, numbered_events, source_file, visible_files

EVENTS = 240


class Child:
    """The outbound loop in a subprocess (tests/outbound/outbound_crash_child.py)."""

    def __init__(self, tmp_path: Path, state: dict[str, Any]) -> None:
        self.state_path = tmp_path / f"state-{len(list(tmp_path.glob('state-*')))}.json"
        self.state_path.write_bytes(orjson.dumps(state))
        self.process = subprocess.Popen([sys.executable, "-m", "tests.outbound.outbound_crash_child",
                                         str(self.state_path)], cwd=REPO, stdout=subprocess.DEVNULL,
                                        stderr=subprocess.PIPE)

    def wait_killed(self, timeout: float = 30) -> None:
        """The child killed itself with SIGKILL (the armed crash point was reached)."""
        code = self.process.wait(timeout)
        assert code == -signal.SIGKILL, self.process.stderr.read().decode() if self.process.stderr else code

    def kill(self) -> None:
        self.process.send_signal(signal.SIGKILL)
        self.process.wait(30)

    def stop(self) -> None:
        self.process.send_signal(signal.SIGTERM)
        assert self.process.wait(30) == 0, self.process.stderr.read().decode() if self.process.stderr else ""


def no_partial_or_temp(folder: Path, reader: FlowFileReader) -> Counter[str]:
    """Once the writer has stopped: no temporary file is left, and `written`."""
    assert [p.name for p in folder.iterdir() if p.name.startswith(".")] == []
    return written(folder, reader)


def written(folder: Path, reader: FlowFileReader) -> Counter[str]:
    """Every visible file parses as a complete valid file; returns how often each meter id was written (a writer may
    be at work: its temporary files are not looked at)."""
    seen: Counter[str] = Counter()
    for path in visible_files(folder):
        seen.update(meter_ids(path, reader))
    return seen


@pytest.mark.parametrize("crash", ["mid_write", "after_link", "before_ack", "external"])
def test_kill_9_then_restart_writes_every_event_exactly_once(
    crash: str, tmp_path: Path, amqp_url: str, suffix: str, client_name: str, publisher: RabbitPublisher,
    reader: FlowFileReader, signer: Signer, trust: Any, admin: Admin, topology: Topology
) -> None:
    folder = tmp_path / "outbound"
    folder.mkdir()
    state = {"url": amqp_url, "suffix": suffix, "client_name": client_name, "folder": str(folder),
             "ledger": str(tmp_path / "ledger.sqlite3"), "jwks": signer.public_jwks(), "batch_size": 40,
             "batch_seconds": 1.0, "prefetch": 100, "crash": None if crash == "external" else crash,
             "after_files": 2}
    template = source_file(EXAMPLES / "D0010002.txt", reader).events[0]
    messages = [message(e, signer) for e in numbered_events(template, EVENTS)]
    if crash == "external":
        # two full files, then 20 events held in an open batch (batch_seconds 30): kill -9 from outside
        publisher.publish_all(messages[:100])
        first = Child(tmp_path, state | {"batch_seconds": 30.0})
        wait_until(lambda: len(visible_files(folder)) == 2, 30)
        wait_until(lambda: admin.message_count(topology.outbound_queue or "") == 0, 30,
                   "the remaining 20 delivered (held, unacked)")
        first.kill()
        publisher.publish_all(messages[100:])
    else:
        publisher.publish_all(messages)
        first = Child(tmp_path, state)
        first.wait_killed()
    assert len(visible_files(folder)) < EVENTS // 40  # killed mid-run
    second = Child(tmp_path, state | {"crash": None})
    try:
        wait_until(lambda: admin.message_count(topology.outbound_queue or "") == 0, 60)
        wait_until(lambda: sum(written(folder, reader).values()) >= EVENTS, 30)
    finally:
        second.stop()
    seen = no_partial_or_temp(folder, reader)
    assert seen == Counter({f"M{n:07d}": 1 for n in range(EVENTS)})
    with Ledger(tmp_path / "ledger.sqlite3") as ledger:
        assert ledger.pending_outbound_files() == []
        records = ledger.outbound_files()
        assert sum(r.events for r in records) == EVENTS
        assert sorted(r.path for r in records) == visible_files(folder)
        identifiers = [r.file_identifier for r in records]
        assert len(set(identifiers)) == len(identifiers)
    assert os.listdir(folder)
