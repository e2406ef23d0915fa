"""RabbitMQ nodes of the tests' own, beside the machine's broker: the TLS node, the three-node cluster.

Each node runs from /usr/lib/rabbitmq/bin (the /usr/sbin wrappers switch to the rabbitmq user) with everything in
the environment: its name, ports, configuration, data and logs under `base`, and an Erlang cookie in a HOME of its
own (nodes of one cluster share it). A node left over by a killed test session is stopped first. A node that does not
start FAILS the test with its log tail (never a skip).
"""

from __future__ import annotations

import os
import secrets
import shutil
import signal
import socket
import subprocess
import time
from pathlib import Path

RABBIT_BIN = Path("/usr/lib/rabbitmq/bin")
STARTUP_TIMEOUT = 90.0


class LocalNode:
    """One node: `configure(lines)`, `start()`, `ctl(...)`, `stop()`."""

    def __init__(self, name: str, base: Path, *, amqp_port: int, dist_port: int, home: Path | None = None,
                 plugins: str = "[]", other_ports: tuple[int, ...] = ()) -> None:
        self.name = name
        self.base = base
        self.home = home or base / "home"
        self.run = base / "run"
        self.log_dir = self.run / "log"
        self.pid_file = base / "node.pid"
        self.amqp_port = amqp_port
        self.dist_port = dist_port
        self.plugins = plugins
        self.ports = (amqp_port, dist_port, *other_ports)
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"amqp://guest:guest@127.0.0.1:{self.amqp_port}/"

    def env(self) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith(("RABBITMQ_", "ERL_"))}
        env.update(
            HOME=str(self.home),
            RABBITMQ_CONF_ENV_FILE=str(self.base / "rabbitmq-env.conf"),
            RABBITMQ_NODENAME=self.name,
            RABBITMQ_NODE_IP_ADDRESS="127.0.0.1",
            RABBITMQ_NODE_PORT=str(self.amqp_port),
            RABBITMQ_DIST_PORT=str(self.dist_port),
            RABBITMQ_CONFIG_FILE=str(self.run / "rabbitmq.conf"),
            RABBITMQ_ADVANCED_CONFIG_FILE=str(self.run / "advanced.config"),
            RABBITMQ_ENABLED_PLUGINS_FILE=str(self.run / "enabled_plugins"),
            RABBITMQ_MNESIA_BASE=str(self.run / "mnesia"),
            RABBITMQ_LOG_BASE=str(self.log_dir),
            RABBITMQ_PID_FILE=str(self.run / "rabbit.pid"),
            ERL_EPMD_ADDRESS="127.0.0.1",
            ERL_FLAGS="-kernel inet_dist_use_interface {127,0,0,1}",
        )
        return env

    def ctl(self, *args: str, timeout: float = 30.0, check: bool = True) -> subprocess.CompletedProcess[str]:
        """rabbitmqctl against this node (with its cookie, through HOME)."""
        result = subprocess.run([str(RABBIT_BIN / "rabbitmqctl"), "-n", self.name, *args], env=self.env(),
                                capture_output=True, text=True, timeout=timeout, check=False)
        if check and result.returncode != 0:
            raise AssertionError(f"rabbitmqctl -n {self.name} {' '.join(args)} failed ({result.returncode}): "
                                 f"{result.stdout}{result.stderr}\n--- node log tail ---\n{self.log_tail()}")
        return result

    def prepare(self) -> None:
        """The HOME with its cookie, any leftover node stopped, and a clean run folder."""
        if not (RABBIT_BIN / "rabbitmq-server").exists():
            raise AssertionError(f"RabbitMQ is not installed at {RABBIT_BIN} (the test starts its own nodes)")
        self.base.mkdir(mode=0o700, parents=True, exist_ok=True)
        self.home.mkdir(mode=0o700, exist_ok=True)
        (self.base / "rabbitmq-env.conf").write_text("# a test node: everything comes from the environment\n")
        cookie = self.home / ".erlang.cookie"
        if not cookie.exists():
            fd = os.open(cookie, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o400)
            with os.fdopen(fd, "w") as out:
                out.write(secrets.token_hex(20).upper())
        self._stop_leftover()
        shutil.rmtree(self.run, ignore_errors=True)
        (self.run / "mnesia").mkdir(parents=True)
        self.log_dir.mkdir()
        (self.run / "enabled_plugins").write_text(f"{self.plugins}.\n")

    def configure(self, lines: list[str]) -> None:
        """rabbitmq.conf: these lines after the node's own listener."""
        conf = [f"listeners.tcp.local = 127.0.0.1:{self.amqp_port}", "log.console = false",
                "log.file.level = info", *lines, ""]
        (self.run / "rabbitmq.conf").write_text("\n".join(conf))

    def launch(self) -> None:
        """Start the node without waiting (`wait_started` waits), so that several can boot at once."""
        for port in self.ports:
            if _port_in_use(port):
                raise AssertionError(f"port {port} is taken by something else; test node {self.name} needs it")
        out = (self.log_dir / "server-stdout.log").open("wb")
        self.process = subprocess.Popen([str(RABBIT_BIN / "rabbitmq-server")], env=self.env(), stdout=out,
                                        stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                        start_new_session=True, cwd=self.run)
        out.close()
        self.pid_file.write_text(f"{self.process.pid}\n")

    def wait_started(self) -> None:
        assert self.process is not None
        deadline = time.monotonic() + STARTUP_TIMEOUT
        while True:
            if self.process.poll() is not None:
                raise AssertionError(f"test node {self.name} exited with {self.process.returncode}:\n"
                                     f"{self.log_tail()}")
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise AssertionError(f"test node {self.name} did not start in {STARTUP_TIMEOUT:g}s:\n"
                                     f"{self.log_tail()}")
            try:
                result = self.ctl("await_startup", "--timeout", str(max(1, int(min(remaining, 20)))),
                                  timeout=min(remaining, 20) + 15, check=False)
            except subprocess.TimeoutExpired:
                continue
            if result.returncode == 0:
                return
            time.sleep(1)  # await_startup failed fast (the node not listening yet): a pause before asking again

    def start(self) -> None:
        self.launch()
        self.wait_started()

    def stop(self) -> None:
        process = self.process
        if process is None:
            return
        try:
            self.ctl("stop", timeout=60, check=False)
        except subprocess.TimeoutExpired:
            pass
        try:
            process.wait(30)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait(10)
        self.pid_file.unlink(missing_ok=True)
        self.process = None

    def log_tail(self, lines: int = 40) -> str:
        parts: list[str] = []
        for log in sorted(self.log_dir.glob("*.log")) if self.log_dir.is_dir() else []:
            try:
                text = log.read_text(errors="replace").splitlines()
            except OSError:
                continue
            parts.append(f"== {log.name} ==\n" + "\n".join(text[-lines:]))
        return "\n".join(parts) or "(no log written)"

    def _stop_leftover(self) -> None:
        """A node an earlier (killed) session started: ask it to stop, then end its recorded process."""
        if (self.home / ".erlang.cookie").exists():
            try:
                self.ctl("stop", timeout=30, check=False)
            except subprocess.TimeoutExpired:
                pass
        try:
            pid = int(self.pid_file.read_text().strip())
        except (OSError, ValueError):
            return
        if self._is_ours(pid):
            os.kill(pid, signal.SIGTERM)
            _wait_gone(pid, 15) or os.kill(pid, signal.SIGKILL)
        self.pid_file.unlink(missing_ok=True)

    def _is_ours(self, pid: int) -> bool:
        try:
            cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
        except OSError:
            return False
        return self.name.encode() in cmdline or str(self.base).encode() in cmdline


def _wait_gone(pid: int, seconds: float) -> bool:
    """Poll until `pid` is gone; False after `seconds` (the caller escalates to SIGKILL rather than failing)."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if not Path(f"/proc/{pid}").exists():
            return True
        time.sleep(0.2)
    return False


def _port_in_use(port: int) -> bool:
    with socket.socket() as sock:
        sock.settimeout(1)
        return sock.connect_ex(("127.0.0.1", port)) == 0
