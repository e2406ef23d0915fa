"""The daemon as a service: READY=1 to systemd once connected, and the metrics and health endpoints."""

from __future__ import annotations

import os
import signal
import socket
import urllib.request
from pathlib import Path
from typing import Any

from tests.conftest import sample
from tests.e2e.conftest import Bridge
from tests.helpers import wait_until


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


class TestService:
    def test_notify_metrics_and_health(self, make_bridge: Any, tmp_path: Path) -> None:
        """READY=1 reaches NOTIFY_SOCKET; /metrics counts the file; /healthz and /readyz answer 200."""
        port = free_port()
        bridge: Bridge = make_bridge(metrics={"port": port})
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
