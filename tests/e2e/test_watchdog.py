"""The systemd watchdog, end to end: the real daemon under a fake systemd (a notify socket and WATCHDOG_USEC). Pings
go on while the daemon waits for the broker, and stop within the watchdog period when its work loop hangs, so that
systemd restarts it (issue 15: a stalled loop was covered for 300 s whatever WatchdogSec said)."""

from __future__ import annotations

import itertools
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import REPO, sample
from tests.e2e.conftest import Bridge, write_config

WATCHDOG_SECONDS = 2.0  # WatchdogSec: pings every second; a loop stuck for a second stops them
#: Runs the daemon with one change: a file whose name holds HANG makes the inbound loop block for ever inside the
#: pipeline (the main thread, which pings, stays well), as a deadlock would.
HANGING_DAEMON = """
import sys, threading
from bridge.inbound.pipeline import InboundPipeline
from bridge.cli import main
real = InboundPipeline.process
def process(self, claim):
    if "HANG" in claim.original_name:
        threading.Event().wait()
    return real(self, claim)
InboundPipeline.process = process
raise SystemExit(main(sys.argv[1:]))
"""


@pytest.fixture
def notify(tmp_path: Path) -> Iterator[tuple[socket.socket, str]]:
    path = tmp_path / "notify.sock"
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    listener.bind(str(path))
    yield listener, str(path)
    listener.close()


def start(config: Path, notify_path: str, root: Path) -> subprocess.Popen[bytes]:
    env = dict(os.environ, NOTIFY_SOCKET=notify_path, WATCHDOG_USEC=str(int(WATCHDOG_SECONDS * 1_000_000)))
    env.pop("WATCHDOG_PID", None)
    with open(root / "daemon.log", "ab") as log:
        return subprocess.Popen([sys.executable, "-c", HANGING_DAEMON, "run", "--config", str(config)],
                                stdout=log, stderr=log, cwd=REPO, env=env)


def pings_between(listener: socket.socket, seconds: float) -> list[float]:
    """When WATCHDOG=1 arrived (seconds from now) during the next `seconds`."""
    begun = time.monotonic()
    times: list[float] = []
    while (left := seconds - (time.monotonic() - begun)) > 0:
        listener.settimeout(left)
        try:
            message = listener.recv(4096)
        except TimeoutError:
            break
        if b"WATCHDOG=1" in message:
            times.append(time.monotonic() - begun)
    return times


def first_ping(listener: socket.socket, timeout: float = 60.0) -> None:
    """Wait for the daemon's first WATCHDOG=1 (its start takes seconds on a busy machine)."""
    listener.settimeout(timeout)
    while b"WATCHDOG=1" not in listener.recv(4096):
        pass


def stop(process: subprocess.Popen[bytes]) -> None:
    process.send_signal(signal.SIGTERM)
    try:
        process.wait(30)
    except subprocess.TimeoutExpired:  # the hung loop is not drained: the drain timeout ends it
        process.kill()
        process.wait(10)


def test_pings_continue_while_the_broker_is_away(tmp_path: Path, notify: tuple[socket.socket, str]) -> None:
    """Waiting to reconnect is not a hang: the pings go on for many watchdog periods with no broker at all."""
    listener, path = notify
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        closed = probe.getsockname()[1]
    config = write_config(tmp_path, ".unused", broker={"urls": [f"amqp://guest:guest@127.0.0.1:{closed}/"],
                                                       "connect_timeout": 1},
                          signing={"key": None, "trust": None}, inbound={"workers": 0})
    process = start(config, path, tmp_path)
    try:
        first_ping(listener)
        times = pings_between(listener, 4 * WATCHDOG_SECONDS)
    finally:
        stop(process)
    gaps = [later - earlier for earlier, later in itertools.pairwise(times)]
    assert len(times) >= 5 and max(gaps) < WATCHDOG_SECONDS, times


def test_a_hung_loop_stops_the_pings_within_the_period(make_bridge: Any, notify: tuple[socket.socket, str],
                                                       tmp_path: Path) -> None:
    listener, path = notify
    bridge: Bridge = make_bridge(inbound={"workers": 0}, outbound={"workers": 0})
    process = start(bridge.config_path, path, bridge.root)
    try:
        bridge.wait_running(process)
        assert len(pings_between(listener, 2 * WATCHDOG_SECONDS)) >= 2  # healthy: a ping every second
        bridge.drop(sample("DTC5259515123502080915D0010"), name="HANG.usr")
        # The loop blocks in the file. The pings stop once it has made no progress for half the period (a ping
        # may still be in flight from just before): after that, nothing, so systemd would restart it.
        hung = pings_between(listener, 5 * WATCHDOG_SECONDS)
        late = [at for at in hung if at > 1.5 * WATCHDOG_SECONDS]
        assert process.poll() is None and not late, hung
    finally:
        process.kill()  # a hung loop is not drained (SIGTERM would wait out the drain timeout)
        process.wait(10)
