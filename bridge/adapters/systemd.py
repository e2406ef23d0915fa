"""systemd integration without extra dependencies: the sd_notify protocol and a watchdog heartbeat.

Under `Type=notify` systemd hands the service a datagram socket in `$NOTIFY_SOCKET` and waits for `READY=1`
before it calls the start done; `STATUS=` lines show in `systemctl status`; with `WatchdogSec=` it expects
`WATCHDOG=1` at least that often and restarts the service when the pings stop. Outside systemd (a terminal,
the tests, a container) the variable is unset and every call is a no-op, so the daemon never needs to know how
it was started.

    notifier = Notifier.from_environment()
    heartbeat = Heartbeat(notifier, watchdog_interval())
    notifier.status("connecting to the broker")
    ...                                    # connect, declare the topology
    notifier.ready("running: broker connected")
    while not stop.is_set():
        heartbeat.beat()                   # pings at most every interval; a hung loop stops the pings
        ...
    notifier.stopping()

The protocol (sd_notify(3)): newline-separated `KEY=VALUE` assignments in one datagram to an AF_UNIX socket
whose path starts with `/`, or with `@` for the abstract namespace (the `@` stands for a leading NUL byte).
"""

from __future__ import annotations

import os
import socket
import threading
import time
from collections.abc import Callable, Mapping

import structlog

__all__ = ["Heartbeat", "Notifier", "watchdog_interval"]

log = structlog.get_logger("dtn_bridge.systemd")


def _socket_address(value: str) -> str | bytes:
    """`$NOTIFY_SOCKET` as a socket address: a path, or an abstract name (`@name` -> `\\0name`)."""
    if value.startswith("@"):
        return b"\0" + value[1:].encode()
    return value


class Notifier:
    """Sends sd_notify messages to systemd; a no-op when the service was not started with a notify socket.

    Failures to send are logged and swallowed: telling systemd how we are doing must never stop the work (a
    lost READY=1 shows up as a start timeout, a lost WATCHDOG=1 as a restart, both visible to the operator).
    """

    def __init__(self, address: str | None) -> None:
        self.address = address or None
        self._lock = threading.Lock()
        self._socket: socket.socket | None = None

    @classmethod
    def from_environment(cls, environ: Mapping[str, str] | None = None) -> Notifier:
        """The notifier for `$NOTIFY_SOCKET` (disabled when unset or empty)."""
        env = os.environ if environ is None else environ
        return cls(env.get("NOTIFY_SOCKET") or None)

    @property
    def enabled(self) -> bool:
        """True when systemd gave us a socket to talk to."""
        return self.address is not None

    def notify(self, **assignments: str | int) -> bool:
        """Send `KEY=VALUE` assignments in one datagram; True when sent (False when disabled or it failed)."""
        if self.address is None:
            return False
        payload = "\n".join(f"{key}={_one_line(str(value))}" for key, value in assignments.items()).encode()
        with self._lock:
            try:
                if self._socket is None:
                    self._socket = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC)
                self._socket.sendto(payload, _socket_address(self.address))
            except OSError as exc:
                log.warning("systemd_notify_failed", socket=self.address, error=str(exc),
                            message=sorted(assignments))
                self._close_socket()
                return False
        return True

    def ready(self, status: str) -> bool:
        """The service is up (READY=1): under Type=notify this is what ends `systemctl start`."""
        return self.notify(READY=1, STATUS=status)

    def status(self, text: str) -> bool:
        """A one-line status shown by `systemctl status` (STATUS=)."""
        return self.notify(STATUS=text)

    def watchdog(self) -> bool:
        """Keep-alive ping (WATCHDOG=1); Heartbeat sends these at the right rate."""
        return self.notify(WATCHDOG=1)

    def stopping(self, status: str = "stopping: finishing the file in hand") -> bool:
        """The service is shutting down on purpose (STOPPING=1), with why in `systemctl status`."""
        return self.notify(STOPPING=1, STATUS=status)

    def reloading(self, status: str = "reloading") -> bool:
        """A reload began (RELOADING=1); send `ready()` when it is done. MONOTONIC_USEC lets systemd >= 253
        match the reload to its request (older versions ignore it)."""
        now_usec = time.clock_gettime_ns(time.CLOCK_MONOTONIC) // 1000
        return self.notify(RELOADING=1, STATUS=status, MONOTONIC_USEC=now_usec)

    def extend_timeout(self, seconds: float, status: str | None = None) -> bool:
        """Ask for `seconds` more before the start or stop timeout fires (systemd >= 236)."""
        fields: dict[str, str | int] = {"EXTEND_TIMEOUT_USEC": max(1, int(seconds * 1_000_000))}
        if status is not None:
            fields["STATUS"] = status
        return self.notify(**fields)

    def close(self) -> None:
        """Release the socket (it is reopened on the next message)."""
        with self._lock:
            self._close_socket()

    def _close_socket(self) -> None:
        if self._socket is not None:
            self._socket.close()
            self._socket = None


def _one_line(text: str) -> str:
    """Newlines separate assignments: a status with one would be cut into a bogus assignment."""
    return " ".join(text.splitlines())


def watchdog_interval(environ: Mapping[str, str] | None = None, *, pid: int | None = None) -> float | None:
    """Seconds between watchdog pings: half of `$WATCHDOG_USEC` (sd_watchdog_enabled(3) advice), or None.

    None when the watchdog is off: the variable is unset, not a positive integer, or `$WATCHDOG_PID` names
    another process (the variables were inherited by a child that is not the supervised one).
    """
    env = os.environ if environ is None else environ
    raw = env.get("WATCHDOG_USEC")
    if not raw:
        return None
    try:
        usec = int(raw)
    except ValueError:
        return None
    if usec <= 0:
        return None
    owner = env.get("WATCHDOG_PID")
    if owner:
        try:
            if int(owner) != (os.getpid() if pid is None else pid):
                return None
        except ValueError:
            return None
    return usec / 1_000_000 / 2


class Heartbeat:
    """Pings the systemd watchdog at most every `interval` seconds, driven by the work loop itself.

    `beat()` is called by the loop that does the work, each iteration (and from long steps, e.g. every few
    thousand events): it records progress and pings when a ping is due. If the loop hangs, the pings stop and
    systemd restarts the service after WatchdogSec.

    `pulse()` is for a supervising thread that stays responsive (the daemon's main thread): it pings only while
    the last `beat()` is younger than `stall_after` seconds, which is tied to `$WATCHDOG_USEC`: half the
    watchdog period by default (the loop beats at least every half second when idle). A loop stuck longer stops
    the pings, and systemd restarts the service one period after the last one: within 1.5 periods of the hang
    (45 s with `WatchdogSec=30`), not after minutes.

    Some steps block for a bounded time without being hung (the backoff before reconnecting, plus the connect
    timeout; a publish waiting for the broker's confirms, bounded by its own timeout). The loop declares each
    with `allow(seconds)` just before it: the pulses go on for that long. The next `beat()` ends the allowance,
    so a step that returned early leaves no cover behind. With `interval` None (no watchdog) all are no-ops.
    """

    def __init__(self, notifier: Notifier, interval: float | None, *, stall_after: float | None = None,
                 clock: Callable[[], float] = time.monotonic) -> None:
        """`stall_after` None: `interval` (half the watchdog period, see `watchdog_interval`)."""
        self.notifier = notifier
        self.interval = interval
        self.stall_after = stall_after if stall_after is not None else (interval if interval is not None else 300.0)
        self._clock = clock
        self._lock = threading.Lock()
        self._last_ping: float | None = None
        self._last_progress = clock()
        self._allowed_until = float("-inf")
        self.pings = 0

    @property
    def enabled(self) -> bool:
        """True when systemd expects watchdog pings."""
        return self.interval is not None and self.notifier.enabled

    def beat(self) -> bool:
        """The work loop made progress: ping when due. True when a ping was sent."""
        with self._lock:
            self._last_progress = self._clock()
            self._allowed_until = float("-inf")
        return self._ping_if_due()

    def allow(self, seconds: float) -> None:
        """A step that may take up to `seconds` without being hung starts now: `pulse()` pings through it (until
        the next `beat()`)."""
        with self._lock:
            self._allowed_until = max(self._allowed_until, self._clock() + max(0.0, seconds))

    def pulse(self) -> bool:
        """From a supervising thread: ping when due, unless the work loop stalled past `stall_after` outside an
        allowed step."""
        with self._lock:
            now = self._clock()
            if now - self._last_progress > self.stall_after and now > self._allowed_until:
                return False
        return self._ping_if_due()

    @property
    def stalled_for(self) -> float:
        """Seconds since the work loop last called `beat()`."""
        with self._lock:
            return self._clock() - self._last_progress

    def _ping_if_due(self) -> bool:
        if self.interval is None or not self.notifier.enabled:
            return False
        with self._lock:
            now = self._clock()
            if self._last_ping is not None and now - self._last_ping < self.interval:
                return False
            self._last_ping = now
        sent = self.notifier.watchdog()
        if sent:
            with self._lock:
                self.pings += 1
        return sent
