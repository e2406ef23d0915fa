"""End-to-end fixtures: a bridge configuration in a temp folder, a capture queue on the real broker, a running
daemon."""

from __future__ import annotations

import collections
import json
import os
import signal
import subprocess
import sys
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson
import pika
import pytest

from bridge.adapters.rabbitmq.topology import Topology
from bridge.adapters.spool import sha256_of
from bridge.config import BridgeConfig, load_config
from bridge.service import Daemon, ensure_folders
from bridge.signing import Signer, TrustStore
from bridge.signing.keys import write_private_key
from tests.conftest import REPO, Admin
from tests.helpers import wait_until


@dataclass
class Bridge:
    """One bridge installation under a temp folder, with its broker objects and a queue capturing all events."""

    root: Path
    config_path: Path
    topology: Topology
    admin: Admin
    capture: str
    trust: TrustStore
    processes: list[subprocess.Popen[bytes]] = field(default_factory=list)
    service_errors: list[list[BaseException]] = field(default_factory=list)  # of in-process services

    @property
    def config(self) -> BridgeConfig:
        return load_config(self.config_path)

    @property
    def inbound(self) -> Path:
        return self.root / "var" / "dtn" / "inbound"

    def folder(self, name: str) -> Path:
        return self.root / "var" / name

    def drop(self, source: Path, name: str | None = None) -> Path:
        """Drop a file the way a gateway does: written under a temporary name, then renamed."""
        target = self.inbound / (name or source.name)
        temporary = target.with_name(f".{target.name}.tmp")
        temporary.write_bytes(source.read_bytes())
        temporary.rename(target)
        return target

    @property
    def outbound_folder(self) -> Path:
        return self.root / "var" / "dtn" / "outbound"

    def outbound_files(self) -> list[Path]:
        return sorted(p for p in self.outbound_folder.iterdir() if not p.name.startswith("."))

    def assert_reproduced(self, sources: list[Path]) -> None:
        """The outbound folder holds exactly `sources`, byte for byte. On a mismatch the message names the files
        missing and extra and what the daemon's log says about outbound writing, not megabytes of diff."""
        def by_digest(paths: list[Path]) -> dict[str, Path]:
            return {sha256_of(path): path for path in paths}

        outbound = self.outbound_files()
        written, wanted = by_digest(outbound), by_digest(sources)
        if sorted(written) == sorted(wanted) and len(outbound) == len(sources):
            return
        missing = sorted(wanted[digest].name for digest in wanted.keys() - written.keys())
        extra = [f"{path.name} ({(path.read_bytes()[:60].decode(errors='replace').splitlines() or [''])[0]})"
                 for digest, path in sorted(written.items()) if digest not in wanted]
        raise AssertionError(f"outbound files: {len(outbound)} written for {len(sources)} sources; "
                             f"missing {missing}; extra {extra}; the daemon's log: {self.outbound_story()}")

    def outbound_story(self) -> dict[str, int]:
        """Counts of the daemon log's outbound events, by event and kind, reason or code (for failure messages)."""
        story: collections.Counter[str] = collections.Counter()
        log_path = self.root / "daemon.log"
        for line in (log_path.read_text().splitlines() if log_path.exists() else []):
            if not line.startswith("{"):
                continue
            entry = json.loads(line)
            event = str(entry.get("event", ""))
            if event.startswith(("outbound_", "file_retry")):
                detail = "/".join(str(entry[k]) for k in ("kind", "reason", "code") if k in entry)
                story[f"{event}:{detail}" if detail else event] += 1
        return dict(sorted(story.items()))

    def archived(self) -> list[Path]:
        return sorted(p for p in self.folder("archive").rglob("*") if p.is_file())

    def quarantined(self) -> list[Path]:
        return sorted(p for p in self.folder("quarantine").iterdir() if not p.name.endswith(".error.json"))

    def wait_settled(self, count: int, timeout: float = 60.0) -> None:
        """Wait until `count` files are archived or quarantined (failing at once if a daemon died)."""
        def settled() -> bool:
            for thread_errors in self.service_errors:
                assert not thread_errors, f"the service failed: {thread_errors[0]!r}"
            return len(self.archived()) + len(self.quarantined()) >= count

        wait_until(settled, timeout,
                   lambda: f"{len(self.archived())} archived, {len(self.quarantined())} quarantined")

    def captured(self, expected: int | None = None, silence: float = 2.0) -> list[tuple[Any, dict[str, Any]]]:
        """Everything published so far, as (properties, event); verifies nothing. With `expected`, read that many
        or until `silence` seconds pass without one."""
        got = self.admin.read(self.capture, expected, timeout=silence) if expected is not None \
            else self.admin.read_all(self.capture)
        return [(props, orjson.loads(body)) for _method, props, body in got]

    def run_files(self, files: list[Path]) -> subprocess.Popen[bytes]:
        """A daemon process started, `files` dropped and settled; the daemon keeps running."""
        process = self.start_process()
        self.wait_running(process)
        for path in files:
            self.drop(path)
        self.wait_settled(len(files))
        return process

    def stop_when_written(self, process: subprocess.Popen[bytes], count: int, timeout: float = 60.0) -> None:
        """Wait until `count` files are in the outbound folder (failing after the timeout), then SIGTERM: the
        daemon exits 0."""
        try:
            wait_until(lambda: len(self.outbound_files()) >= count, timeout,
                       lambda: f"{len(self.outbound_files())} of {count} files written")
        finally:
            process.send_signal(signal.SIGTERM)
            assert process.wait(30) == 0

    def route_back(self) -> int:
        """What a migration test harness does: every event captured so far published again to `outbound.<key>`
        (inbound events lose their `inbound.` prefix; manifests keep their key). Returns how many. The copies it
        published earlier (captured too, under `outbound.`) are not routed again."""
        routed = 0
        for method, props, body in self.admin.read_all(self.capture):
            if method.routing_key.startswith("outbound."):
                continue
            key = method.routing_key.split(".", 1)[1] if method.routing_key.startswith("inbound.") \
                else method.routing_key
            self.admin.channel.basic_publish(self.topology.exchange, f"outbound.{key}", body,
                                             pika.BasicProperties(message_id=props.message_id, delivery_mode=2))
            routed += 1
        return routed

    def wait_running(self, process: subprocess.Popen[bytes], timeout: float = 30.0) -> None:
        """Wait until this daemon process reports itself running (connected, signal handlers in place)."""
        status = self.folder("state") / "status.json"

        def running() -> bool:
            values = json.loads(status.read_text() or "{}") if status.exists() else {}
            if values.get("pid") == process.pid and values.get("state") == "running":
                return True
            assert process.poll() is None, f"the daemon exited with {process.returncode}"
            return False

        wait_until(running, timeout, "the daemon did not report running")

    def start_process(self) -> subprocess.Popen[bytes]:
        """`dtn-bridge run` as a real process, logs to var/daemon.log."""
        with open(self.root / "daemon.log", "ab") as log:  # the child keeps its own copy of the descriptor
            process = subprocess.Popen([sys.executable, "-m", "bridge", "run", "--config", str(self.config_path)],
                                       stdout=log, stderr=log, cwd=REPO)
        self.processes.append(process)
        return process

    def kill_processes(self) -> None:
        """SIGKILL every daemon process this bridge started that still runs (a test's teardown)."""
        for process in self.processes:
            if process.poll() is None:
                os.kill(process.pid, signal.SIGKILL)
                process.wait(10)


def held_or_queued(queue: str) -> int:
    """Messages in `queue`, ready or delivered and not yet acked (`rabbitmqctl list_queues name messages`)."""
    listed = subprocess.run(["rabbitmqctl", "-q", "list_queues", "name", "messages"], check=True,
                            capture_output=True, text=True, timeout=60).stdout
    counts = dict(line.split("\t") for line in listed.splitlines() if "\t" in line)
    return int(counts[queue])


def write_config(root: Path, suffix: str, **overrides: Any) -> Path:
    """A configuration like config/bridge.example.yaml, under `root`, with unique broker names."""
    sections: dict[str, dict[str, Any]] = {
        "participant": {"id": "DTNB", "role": "X"},
        "broker": {"urls": ["amqp://guest:guest@127.0.0.1:5672/"], "topology_suffix": suffix, "heartbeat": 10},
        "watch": {"inbound": "var/dtn/inbound", "stable_seconds": 0.3, "rescan_seconds": 1.0, "poll_interval": 0.2},
        "spool": {"processing": "var/processing", "archive": "var/archive", "quarantine": "var/quarantine"},
        "state": {"dir": "var/state"},
        "signing": {"key": "keys/bridge.key.pem", "trust": "keys/bridge.jwks.json"},
        "flows": {"definitions": str(REPO / "flow_definitions")},
        "outbound": {"folder": "var/dtn/outbound", "batch_seconds": 2},
        "log": {"level": "debug", "format": "json"},
        "rules": {"addressee": {"enforce": False}},  # the samples are addressed to many participants
    }
    for section, values in overrides.items():
        sections.setdefault(section, {}).update(values)
    path = root / "bridge.yaml"
    path.write_text(json.dumps(sections, indent=2))  # JSON is YAML
    return path


@pytest.fixture
def make_bridge(tmp_path: Path, amqp_url: str, suffix: str, admin: Admin,
                topology: Topology) -> Iterator[Callable[..., Bridge]]:
    """Build a bridge installation; kills any daemon process it started afterwards."""
    made: list[Bridge] = []

    def make(**overrides: Any) -> Bridge:
        (tmp_path / "keys").mkdir(exist_ok=True)
        signer = Signer.generate()
        write_private_key(tmp_path / "keys" / "bridge.key.pem", signer.private_key)
        (tmp_path / "keys" / "bridge.jwks.json").write_text(json.dumps(signer.public_jwks()))
        trust = TrustStore.from_jwks(signer.public_jwks())
        config_path = write_config(tmp_path, suffix, **overrides)
        ensure_folders(load_config(config_path))
        admin.channel.exchange_declare(topology.exchange, exchange_type="topic", durable=True)
        capture = admin.probe_queue(topology.exchange, "#", durable=True)  # survives a broker restart
        bridge = Bridge(tmp_path, config_path, topology, admin, capture, trust)
        made.append(bridge)
        return bridge

    yield make
    for bridge in made:
        bridge.kill_processes()


@dataclass
class RunningService:
    """The inbound service on a thread of the test process (faster and easier to observe than a process)."""

    service: Daemon
    stop: threading.Event
    thread: threading.Thread
    errors: list[BaseException]

    def close(self) -> None:
        self.stop.set()
        self.thread.join(30)
        assert not self.thread.is_alive(), "the service did not stop within 30 s"
        self.service.close()
        assert not self.errors, f"the service failed: {self.errors[0]!r}"


@pytest.fixture
def run_service() -> Iterator[Callable[[Bridge], RunningService]]:
    """Start the daemon's inbound loop on a thread; stopped after the test."""
    running: list[RunningService] = []

    def start(bridge: Bridge) -> RunningService:
        service = Daemon(bridge.config)
        stop = threading.Event()
        ready = threading.Event()
        errors: list[BaseException] = []

        def work() -> None:
            try:
                service.inbound.run(stop, ready.set)
            except BaseException as exc:  # noqa: BLE001 (surfaced by the test, not lost in a thread)
                errors.append(exc)
                ready.set()

        thread = threading.Thread(target=work, daemon=True)
        thread.start()
        assert ready.wait(30) and not errors, f"the service did not start: {errors!r}"
        handle = RunningService(service, stop, thread, errors)
        bridge.service_errors.append(errors)
        running.append(handle)
        return handle

    yield start
    for handle in running:
        if handle.thread.is_alive():
            handle.close()
