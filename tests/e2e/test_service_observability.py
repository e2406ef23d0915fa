"""The daemon as a service: READY=1 to systemd once connected, and the metrics and health endpoints."""

from __future__ import annotations

import os
import signal
import socket
import urllib.request
from pathlib import Path
from typing import Any

from bridge.service import Daemon
from tests.conftest import sample
from tests.e2e.conftest import Bridge
from tests.helpers import wait_until


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


class TestService:
    def test_notify_metrics_and_health(self, make_bridge: Any, tmp_path: Path) -> None:
        """READY=1 reaches NOTIFY_SOCKET; /metrics counts the file; /healthz and /readyz answer 200. With
        `broker.heartbeat: 0` (issue 15: documented as disabling heartbeats, and `run` refused it)."""
        port = free_port()
        bridge: Bridge = make_bridge(metrics={"port": port}, broker={"heartbeat": 0})
        notify_path = tmp_path / "notify.sock"
        listener = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        listener.bind(str(notify_path))
        listener.settimeout(30)
        os.environ["NOTIFY_SOCKET"] = str(notify_path)
        try:
            process = bridge.start_process()
        finally:
            del os.environ["NOTIFY_SOCKET"]
        messages = []
        while not any(b"READY=1" in message for message in messages):
            messages.append(listener.recv(4096))
        assert any(b"STATUS=running" in message for message in messages)
        bridge.drop(sample("DTC5259515123502080915D0010"))
        bridge.wait_settled(1)
        base = f"http://127.0.0.1:{port}"

        def scrape() -> str:
            return str(urllib.request.urlopen(f"{base}/metrics", timeout=5).read().decode())

        wait_until(lambda: "dtn_bridge_files_published_total 1.0" in scrape(), 10, "the file not counted")
        metrics = scrape()
        assert "dtn_bridge_events_confirmed_total 12.0" in metrics  # 11 instances and the manifest
        assert "dtn_bridge_broker_connected 1.0" in metrics
        assert urllib.request.urlopen(f"{base}/healthz", timeout=5).status == 200
        assert urllib.request.urlopen(f"{base}/readyz", timeout=5).status == 200
        # issue 15: standard process_* names, the workers' CPU and memory, a build_info, no _created series
        assert "process_resident_memory_bytes " in metrics and "dtn_bridge_process_" not in metrics
        assert 'dtn_bridge_worker_cpu_seconds_total{pid="' in metrics and 'role="build"' in metrics
        assert "dtn_bridge_build_info{" in metrics and "_created" not in metrics
        assert "dtn_bridge_outbound_writing_held 0.0" in metrics
        process.send_signal(signal.SIGTERM)
        assert process.wait(30) == 0
        listener.settimeout(2)
        stopping = []
        try:
            while True:
                stopping.append(listener.recv(4096))
        except TimeoutError:
            pass
        assert any(b"STOPPING=1" in message for message in stopping)
        listener.close()


class TestReadiness:
    def test_readyz_includes_the_outbound_side(self, make_bridge: Any) -> None:
        """Issue 15: /readyz ignored the outbound consumer. Not ready while it is not connected, or while writing is
        held (a full disk), which the dtn_bridge_outbound_writing_held gauge shows too."""
        bridge: Bridge = make_bridge(inbound={"workers": 0}, outbound={"workers": 0})
        daemon = Daemon(bridge.config)
        try:
            daemon.outbound_loop()
            consumer = daemon.outbound_consumer
            assert consumer is not None
            assert daemon.outbound_problem() == "consumer not connected to the broker"
            consumer.connect()
            assert daemon.outbound_problem() is None
            daemon.outbound_interrupted("StorageError: no space left on device")
            assert daemon.outbound_problem() == "writing held: StorageError: no space left on device"
            assert b"dtn_bridge_outbound_writing_held 1.0" in daemon.metrics.exposition()
            daemon.outbound_interrupted(None)
            assert daemon.outbound_problem() is None
            assert b"dtn_bridge_outbound_writing_held 0.0" in daemon.metrics.exposition()
            consumer.close()
            assert daemon.outbound_problem() == "consumer not connected to the broker"
        finally:
            daemon.close()
