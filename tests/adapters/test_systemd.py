"""sd_notify against real AF_UNIX datagram sockets (a path in tmp_path, an abstract name); the heartbeat."""

from __future__ import annotations

import os
import socket
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from bridge.adapters.systemd import Heartbeat, Notifier, watchdog_interval


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def receive(sock: socket.socket) -> dict[str, str]:
    data = sock.recv(4096).decode()
    return dict(line.split("=", 1) for line in data.split("\n"))


def nothing_waiting(sock: socket.socket) -> bool:
    sock.setblocking(False)
    try:
        sock.recv(4096)
    except BlockingIOError:
        return True
    finally:
        sock.setblocking(True)
    return False


@pytest.fixture
def listener(tmp_path: Path) -> Iterator[tuple[socket.socket, str]]:
    path = tmp_path / "notify.sock"
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind(str(path))
    sock.settimeout(5)
    yield sock, str(path)
    sock.close()


@pytest.fixture
def abstract_listener() -> Iterator[tuple[socket.socket, str]]:
    name = f"dtn-bridge-test-{uuid.uuid4().hex}"
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind(b"\0" + name.encode())
    sock.settimeout(5)
    yield sock, "@" + name
    sock.close()


def test_disabled_without_notify_socket() -> None:
    notifier = Notifier.from_environment({})
    assert not notifier.enabled
    assert notifier.ready("up") is False
    assert notifier.status("x") is False
    assert notifier.watchdog() is False
    assert Notifier.from_environment({"NOTIFY_SOCKET": ""}).enabled is False


def test_from_environment_reads_os_environ(monkeypatch: pytest.MonkeyPatch,
                                           listener: tuple[socket.socket, str]) -> None:
    sock, path = listener
    monkeypatch.setenv("NOTIFY_SOCKET", path)
    notifier = Notifier.from_environment()
    assert notifier.enabled and notifier.address == path
    assert notifier.status("hello")
    assert receive(sock) == {"STATUS": "hello"}


def test_messages_on_a_path_socket(listener: tuple[socket.socket, str]) -> None:
    sock, path = listener
    notifier = Notifier.from_environment({"NOTIFY_SOCKET": path})
    assert notifier.ready("running: broker connected")
    assert receive(sock) == {"READY": "1", "STATUS": "running: broker connected"}
    assert notifier.status("waiting for the broker")
    assert receive(sock) == {"STATUS": "waiting for the broker"}
    assert notifier.watchdog()
    assert receive(sock) == {"WATCHDOG": "1"}
    assert notifier.stopping()
    message = receive(sock)
    assert message["STOPPING"] == "1" and message["STATUS"]
    assert notifier.reloading()
    message = receive(sock)
    assert message["RELOADING"] == "1" and int(message["MONOTONIC_USEC"]) > 0
    assert notifier.extend_timeout(2.5, status="still waiting")
    assert receive(sock) == {"EXTEND_TIMEOUT_USEC": "2500000", "STATUS": "still waiting"}
    notifier.close()


def test_messages_on_an_abstract_socket(abstract_listener: tuple[socket.socket, str]) -> None:
    sock, name = abstract_listener
    notifier = Notifier.from_environment({"NOTIFY_SOCKET": name})
    assert notifier.ready("up")
    assert receive(sock) == {"READY": "1", "STATUS": "up"}
    assert notifier.watchdog()
    assert receive(sock) == {"WATCHDOG": "1"}


def test_a_status_with_newlines_stays_one_assignment(listener: tuple[socket.socket, str]) -> None:
    sock, path = listener
    Notifier(path).status("broker down:\nconnection refused")
    assert receive(sock) == {"STATUS": "broker down: connection refused"}


def test_a_missing_socket_is_logged_not_raised(tmp_path: Path, listener: tuple[socket.socket, str]) -> None:
    notifier = Notifier(str(tmp_path / "gone.sock"))
    assert notifier.status("x") is False  # no exception: telling systemd must never stop the work
    sock, path = listener
    notifier.address = path  # and it recovers once the socket is there
    assert notifier.status("y")
    assert receive(sock) == {"STATUS": "y"}


@pytest.mark.parametrize(("env", "expected"), [
    ({}, None),
    ({"WATCHDOG_USEC": "30000000"}, 15.0),
    ({"WATCHDOG_USEC": "30000000", "WATCHDOG_PID": str(os.getpid())}, 15.0),
    ({"WATCHDOG_USEC": "30000000", "WATCHDOG_PID": "1"}, None),  # another process is supervised
    ({"WATCHDOG_USEC": "30000000", "WATCHDOG_PID": "x"}, None),
    ({"WATCHDOG_USEC": "0"}, None),
    ({"WATCHDOG_USEC": "-5"}, None),
    ({"WATCHDOG_USEC": "soon"}, None),
    ({"WATCHDOG_USEC": ""}, None),
])
def test_watchdog_interval(env: dict[str, str], expected: float | None) -> None:
    assert watchdog_interval(env) == expected


def test_watchdog_interval_reads_os_environ(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("WATCHDOG_USEC", "2000000")
    monkeypatch.delenv("WATCHDOG_PID", raising=False)
    assert watchdog_interval() == 1.0
    monkeypatch.setenv("WATCHDOG_PID", str(os.getpid() + 1))
    assert watchdog_interval() is None
    assert watchdog_interval(pid=os.getpid() + 1) == 1.0


def test_heartbeat_pings_at_most_every_interval(listener: tuple[socket.socket, str]) -> None:
    sock, path = listener
    clock = FakeClock()
    heartbeat = Heartbeat(Notifier(path), 15.0, clock=clock)
    assert heartbeat.enabled
    assert heartbeat.beat()  # the first beat pings at once
    assert receive(sock) == {"WATCHDOG": "1"}
    for _ in range(10):  # a busy loop: many beats, no flood
        clock.now += 1.0
        assert not heartbeat.beat()
    assert nothing_waiting(sock)
    clock.now += 5.0  # 15 s since the last ping
    assert heartbeat.beat()
    assert receive(sock) == {"WATCHDOG": "1"}
    assert heartbeat.pings == 2


def test_heartbeat_stops_when_the_loop_hangs(listener: tuple[socket.socket, str]) -> None:
    """pulse() (the supervising thread) covers bounded waits but not a loop stuck past stall_after."""
    sock, path = listener
    clock = FakeClock()
    heartbeat = Heartbeat(Notifier(path), 15.0, stall_after=60.0, clock=clock)
    assert heartbeat.beat()
    receive(sock)
    clock.now += 20.0  # the loop is waiting to reconnect: the supervisor keeps systemd happy
    assert heartbeat.pulse()
    assert receive(sock) == {"WATCHDOG": "1"}
    clock.now += 41.0  # 61 s without a beat: hung. No more pings, so systemd restarts the service.
    assert heartbeat.stalled_for == pytest.approx(61.0)
    assert not heartbeat.pulse()
    clock.now += 100.0
    assert not heartbeat.pulse()
    assert nothing_waiting(sock)
    assert heartbeat.beat()  # the loop came back
    assert receive(sock) == {"WATCHDOG": "1"}


def test_heartbeat_is_a_no_op_without_watchdog(listener: tuple[socket.socket, str]) -> None:
    sock, path = listener
    heartbeat = Heartbeat(Notifier(path), None)
    assert not heartbeat.enabled
    assert not heartbeat.beat() and not heartbeat.pulse()
    assert nothing_waiting(sock)
    assert not Heartbeat(Notifier(None), 1.0).beat()


def test_the_stall_limit_follows_the_watchdog_period(listener: tuple[socket.socket, str]) -> None:
    """WatchdogSec=30: a loop without progress for 15 s (half the period) stops the pings, so systemd restarts the
    daemon within 45 s of the hang, not after the 300 s the limit used to be."""
    sock, path = listener
    clock = FakeClock()
    heartbeat = Heartbeat(Notifier(path), watchdog_interval({"WATCHDOG_USEC": "30000000"}), clock=clock)
    assert (heartbeat.interval, heartbeat.stall_after) == (15.0, 15.0)
    assert heartbeat.beat()
    receive(sock)
    clock.now += 15.0
    assert heartbeat.pulse()  # 15 s without progress: still within the limit
    receive(sock)
    clock.now += 15.1
    assert not heartbeat.pulse() and nothing_waiting(sock)


def test_an_allowed_step_is_covered_until_the_next_beat(listener: tuple[socket.socket, str]) -> None:
    """allow(seconds): a bounded wait (a reconnect backoff, a publish waiting for confirms) is not a hang; the next
    beat ends the allowance, so a hang after it is seen as soon as any other."""
    sock, path = listener
    clock = FakeClock()
    heartbeat = Heartbeat(Notifier(path), 15.0, clock=clock)
    heartbeat.beat()
    receive(sock)
    heartbeat.allow(100.0)
    for _ in range(6):  # 90 s inside the allowed step: a ping every 15 s
        clock.now += 15.0
        assert heartbeat.pulse()
        receive(sock)
    clock.now += 25.0  # 115 s: past the allowance and the stall limit
    assert not heartbeat.pulse()
    heartbeat.beat()
    receive(sock)
    heartbeat.allow(100.0)
    heartbeat.beat()  # the step returned early
    clock.now += 16.0
    assert not heartbeat.pulse() and nothing_waiting(sock)
