"""The metrics registry and the HTTP endpoints, served for real on an ephemeral port and read with urllib."""

from __future__ import annotations

import json
import os
import platform
import socket
import subprocess
import sys
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest
from prometheus_client.parser import text_string_to_metric_families

from bridge import __version__
from bridge.adapters.metrics import Metrics, MetricsServer, folders_writable, make_readiness
from bridge.errors import StorageError

EXPECTED = {  # family name (as the parser reports it) -> type
    "dtn_bridge_files_received": "counter",
    "dtn_bridge_files_published": "counter",
    "dtn_bridge_files_duplicate": "counter",
    "dtn_bridge_files_quarantined": "counter",
    "dtn_bridge_events_published": "counter",
    "dtn_bridge_events_confirmed": "counter",
    "dtn_bridge_events_returned": "counter",
    "dtn_bridge_events_nacked": "counter",
    "dtn_bridge_outbound_events_written": "counter",
    "dtn_bridge_outbound_events_rejected": "counter",
    "dtn_bridge_governance_decisions": "counter",
    "dtn_bridge_queue_backlog": "gauge",
    "dtn_bridge_broker_connected": "gauge",
    "dtn_bridge_files_in_flight": "gauge",
    "dtn_bridge_publish_latency_seconds": "histogram",
    "dtn_bridge_outbound_writing_held": "gauge",
    "dtn_bridge_build_info": "gauge",  # an Info, in the text format a gauge of value 1
    # the worker processes, from /proc
    "dtn_bridge_worker_cpu_seconds": "counter",
    "dtn_bridge_worker_resident_memory_bytes": "gauge",
    "dtn_bridge_workers": "gauge",
    # the daemon process: the standard names every exporter uses
    "process_virtual_memory_bytes": "gauge",
    "process_resident_memory_bytes": "gauge",
    "process_start_time_seconds": "gauge",
    "process_cpu_seconds": "counter",
    "process_open_fds": "gauge",
    "process_max_fds": "gauge",
}


def get(url: str) -> tuple[int, str, str]:
    """Status, content type and body; HTTP errors are answers too."""
    try:
        with urllib.request.urlopen(url, timeout=5) as response:
            return response.status, response.headers["Content-Type"], response.read().decode()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.headers["Content-Type"], exc.read().decode()


def samples(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    return {(s.name, tuple(sorted(s.labels.items()))): s.value
            for family in text_string_to_metric_families(text) for s in family.samples}


class Switch:
    def __init__(self) -> None:
        self.ready = False
        self.reasons = ["broker: not connected"]

    def __call__(self) -> tuple[bool, list[str]]:
        return self.ready, list(self.reasons)


@pytest.fixture
def switch() -> Switch:
    return Switch()


@pytest.fixture
def served(switch: Switch) -> Iterator[tuple[Metrics, MetricsServer]]:
    metrics = Metrics()
    server = MetricsServer(metrics, "127.0.0.1", 0, readiness=switch)
    server.start()
    yield metrics, server
    server.stop()


def test_every_metric_is_defined_with_its_type() -> None:
    """Issue 15: no `_created` series, the process metrics by their standard names, a build_info."""
    text = Metrics().exposition().decode()
    families = {f.name: f.type for f in text_string_to_metric_families(text)}
    assert families == EXPECTED
    assert "_created" not in text
    assert all(name.startswith(("dtn_bridge_", "process_")) for name in families)
    assert samples(text)[("dtn_bridge_build_info", (("python", platform.python_version()),
                                                    ("version", __version__)))] == 1


def test_worker_processes_cpu_and_memory() -> None:
    """The workers' CPU and resident memory, from /proc: a child that burns CPU and holds memory shows both, under
    its role and pid; one that ended is left out."""
    program = ("import sys, time\nblock = b'x' * (64 << 20)\nend = time.process_time() + 0.3\n"
               "while time.process_time() < end: pass\nprint('ok', flush=True)\nsys.stdin.read()")
    burner = subprocess.Popen([sys.executable, "-c", program], stdin=subprocess.PIPE, stdout=subprocess.PIPE)
    assert burner.stdout is not None and burner.stdin is not None
    try:
        assert burner.stdout.readline() == b"ok\n"
        metrics = Metrics(workers=lambda: [("build", burner.pid), ("check", 2**22 + 1)])  # the second: no such pid
        values = samples(metrics.exposition().decode())
    finally:
        burner.stdin.close()
        burner.wait(10)
    labels = (("pid", str(burner.pid)), ("role", "build"))
    assert values[("dtn_bridge_worker_cpu_seconds_total", labels)] >= 0.3
    assert values[("dtn_bridge_worker_resident_memory_bytes", labels)] >= 64 << 20
    assert values[("dtn_bridge_workers", (("role", "build"),))] == 1
    assert not any(name.startswith("dtn_bridge_worker") and ("role", "check") in label
                   for name, label in values)


def test_the_live_worker_processes_are_listed(tmp_path: Path) -> None:
    """Metrics() reads the workers the daemon started (ChildProcess), and only while they run."""
    from bridge.adapters.processes import ChildProcess, live_children

    child = ChildProcess("check", "operator:is_", None, ("info", "json"))  # returns at once
    child.start()
    try:
        assert ("check", child.pid) in live_children()
        assert ("dtn_bridge_workers", (("role", "check"),)) in samples(Metrics().exposition().decode())
    finally:
        child.close(graceful=False)
    assert all(role != "check" or pid != child.pid for role, pid in live_children())


def test_outbound_writing_held() -> None:
    metrics = Metrics()
    metrics.set_outbound_held("StorageError: no space left on device")
    assert samples(metrics.exposition().decode())[("dtn_bridge_outbound_writing_held", ())] == 1
    metrics.set_outbound_held(None)
    assert samples(metrics.exposition().decode())[("dtn_bridge_outbound_writing_held", ())] == 0


def test_registries_are_private() -> None:
    """Two instances (two daemons in one test process) never clash; nothing lands in the global registry."""
    from prometheus_client import REGISTRY

    first, second = Metrics(), Metrics()
    first.files_received.inc(3)
    assert samples(second.exposition().decode())[("dtn_bridge_files_received_total", ())] == 0
    assert REGISTRY.get_sample_value("dtn_bridge_files_received_total") is None


def test_file_settled_counts_by_outcome() -> None:
    metrics = Metrics()
    metrics.file_settled("archived", latency=4.2)
    metrics.file_settled("archived", latency=0.3)
    metrics.file_settled("duplicate")
    metrics.file_settled("quarantined", rule="item-format")
    metrics.file_settled("quarantined", rule="item-format")
    metrics.file_settled("quarantined")
    values = samples(metrics.exposition().decode())
    assert values[("dtn_bridge_files_published_total", ())] == 2
    assert values[("dtn_bridge_files_duplicate_total", ())] == 1
    assert values[("dtn_bridge_files_quarantined_total", (("rule", "item-format"),))] == 2
    assert values[("dtn_bridge_files_quarantined_total", (("rule", "unknown"),))] == 1
    assert values[("dtn_bridge_publish_latency_seconds_count", ())] == 2
    assert values[("dtn_bridge_publish_latency_seconds_sum", ())] == pytest.approx(4.5)
    assert values[("dtn_bridge_publish_latency_seconds_bucket", (("le", "0.5"),))] == 1
    assert values[("dtn_bridge_publish_latency_seconds_bucket", (("le", "5.0"),))] == 2
    with pytest.raises(ValueError, match="unknown file outcome"):
        metrics.file_settled("lost")


def test_governance_decision_counts_a_rules_decision() -> None:
    from bridge.rules.model import Decision

    metrics = Metrics()
    metrics.governance_decision(Decision("participants.deny", "reject", "inbound", "D0010002", "UDMS", "no"))
    metrics.governance_decision(Decision("routing.unrouted", "accept", "outbound", None, None, "no route"))
    values = samples(metrics.exposition().decode())
    assert values[("dtn_bridge_governance_decisions_total", (("flow", "D0010002"), ("outcome", "reject"),
                                                             ("participant", "UDMS"),
                                                             ("rule", "participants.deny")))] == 1
    assert values[("dtn_bridge_governance_decisions_total", (("flow", "none"), ("outcome", "accept"),
                                                             ("participant", "none"),
                                                             ("rule", "routing.unrouted")))] == 1


def test_metrics_endpoint(served: tuple[Metrics, MetricsServer]) -> None:
    metrics, server = served
    metrics.files_received.inc(2)
    metrics.events_published.inc(10)
    metrics.events_confirmed.inc(9)
    metrics.events_nacked.inc()
    metrics.events_returned.inc()
    metrics.outbound_events_written.inc(5)
    metrics.outbound_events_rejected.labels(code="signature-invalid").inc()
    metrics.governance_decisions.labels(rule="r1", flow="D0010002", participant="MRCY", outcome="allow").inc()
    metrics.queue_backlog.set(7)
    metrics.files_in_flight.set(1)
    metrics.set_broker_connected(True)
    status, content_type, body = get(f"{server.url}/metrics")
    assert status == 200
    assert content_type.startswith("text/plain") and "version=0.0.4" in content_type
    values = samples(body)
    assert values[("dtn_bridge_files_received_total", ())] == 2
    assert values[("dtn_bridge_events_published_total", ())] == 10
    assert values[("dtn_bridge_events_confirmed_total", ())] == 9
    assert values[("dtn_bridge_events_nacked_total", ())] == 1
    assert values[("dtn_bridge_events_returned_total", ())] == 1
    assert values[("dtn_bridge_outbound_events_written_total", ())] == 5
    assert values[("dtn_bridge_outbound_events_rejected_total", (("code", "signature-invalid"),))] == 1
    assert values[("dtn_bridge_governance_decisions_total",
                   (("flow", "D0010002"), ("outcome", "allow"), ("participant", "MRCY"), ("rule", "r1")))
                  ] == 1
    assert values[("dtn_bridge_queue_backlog", ())] == 7
    assert values[("dtn_bridge_files_in_flight", ())] == 1
    assert values[("dtn_bridge_broker_connected", ())] == 1
    metrics.set_broker_connected(False)
    assert samples(get(f"{server.url}/metrics")[2])[("dtn_bridge_broker_connected", ())] == 0


def test_healthz_and_unknown_paths(served: tuple[Metrics, MetricsServer]) -> None:
    _, server = served
    assert get(f"{server.url}/healthz") == (200, "text/plain; charset=utf-8", "ok\n")
    status, _, body = get(f"{server.url}/nope")
    assert status == 404 and "/metrics" in body
    request = urllib.request.Request(f"{server.url}/healthz", method="HEAD")
    with urllib.request.urlopen(request, timeout=5) as response:
        assert response.status == 200 and response.read() == b""


def test_readyz_follows_the_readiness_check(served: tuple[Metrics, MetricsServer], switch: Switch) -> None:
    _, server = served
    status, content_type, body = get(f"{server.url}/readyz")
    assert (status, content_type) == (503, "application/json")
    assert json.loads(body) == {"ready": False, "reasons": ["broker: not connected"]}
    switch.ready, switch.reasons = True, []
    status, _, body = get(f"{server.url}/readyz")
    assert status == 200 and json.loads(body) == {"ready": True, "reasons": []}
    switch.ready, switch.reasons = False, ["/srv/dtn/inbound: not writable"]
    status, _, body = get(f"{server.url}/readyz")
    assert status == 503 and json.loads(body)["reasons"] == ["/srv/dtn/inbound: not writable"]


def test_a_failing_readiness_check_is_not_ready() -> None:
    def broken() -> tuple[bool, list[str]]:
        raise RuntimeError("boom")

    with MetricsServer(Metrics(), "127.0.0.1", 0, readiness=broken) as server:
        status, _, body = get(f"{server.url}/readyz")
    assert status == 503
    assert json.loads(body)["reasons"] == ["readiness check failed: RuntimeError: boom"]


def test_stop_releases_the_port() -> None:
    server = MetricsServer(Metrics(), "127.0.0.1", 0)
    server.start()
    port = server.port
    assert get(f"{server.url}/healthz")[0] == 200
    server.stop()
    server.stop()  # idempotent
    with pytest.raises(RuntimeError):
        _ = server.port
    with socket.create_server(("127.0.0.1", port)):  # the port is free again
        pass


def test_a_port_in_use_is_a_storage_error() -> None:
    with socket.create_server(("127.0.0.1", 0)) as taken:
        port = taken.getsockname()[1]
        with pytest.raises(StorageError, match=f"127.0.0.1:{port}"):
            MetricsServer(Metrics(), "127.0.0.1", port).start()


def test_ipv6_loopback() -> None:
    if not socket.has_ipv6:
        pytest.fail("this host has no IPv6 support")
    try:
        with socket.create_server(("::1", 0), family=socket.AF_INET6):
            pass
    except OSError:
        pytest.skip("::1 is not configured on this host")  # containers without IPv6 loopback
    with MetricsServer(Metrics(), "::1", 0) as server:
        assert server.url.startswith("http://[::1]:")
        assert get(f"{server.url}/healthz")[0] == 200


def test_folders_writable(tmp_path: Path) -> None:
    good = tmp_path / "good"
    good.mkdir()
    a_file = tmp_path / "file"
    a_file.write_text("x")
    assert folders_writable([good]) == []
    assert folders_writable([tmp_path / "missing", a_file, str(good)]) == [
        f"{tmp_path / 'missing'}: does not exist", f"{a_file}: not a folder"]
    locked = tmp_path / "locked"
    locked.mkdir(mode=0o500)
    if os.geteuid() != 0:  # root writes anywhere that is not mounted read-only
        assert folders_writable([locked]) == [f"{locked}: not writable"]


def test_folders_writable_reports_a_read_only_mount() -> None:
    """What ProtectSystem=strict does to a folder not in ReadWritePaths (here: /proc/sys, if read-only)."""
    if os.access("/proc/sys", os.W_OK):
        pytest.skip("/proc/sys is writable here")
    assert folders_writable(["/proc/sys"]) == ["/proc/sys: not writable"]


def test_make_readiness(tmp_path: Path) -> None:
    connected = [False]
    outbound: list[str | None] = ["consumer not connected to the broker"]
    check = make_readiness(lambda: connected[0], [tmp_path, tmp_path / "missing"], lambda: outbound[0])
    assert check() == (False, ["broker: not connected", "outbound: consumer not connected to the broker",
                               f"{tmp_path / 'missing'}: does not exist"])
    connected[0] = True
    outbound[0] = None
    (tmp_path / "missing").mkdir()
    assert check() == (True, [])
    outbound[0] = "writing held: StorageError: no space left on device"
    assert check() == (False, ["outbound: writing held: StorageError: no space left on device"])


# -------------------------------------------------------------------------------------- the Grafana dashboard

DASHBOARD = Path(__file__).resolve().parents[2] / "docs" / "grafana-dashboard.json"
SERIES_SUFFIXES = {"counter": ("_total",), "histogram": ("_bucket", "_sum", "_count"), "gauge": ("",)}


def defined_series() -> tuple[set[str], set[str]]:
    """The series names Metrics exposes, and every label name its metrics carry (plus Prometheus' own)."""
    metrics = Metrics(workers=lambda: [("build", os.getpid())])
    families = list(text_string_to_metric_families(metrics.exposition().decode()))
    names = {f.name + suffix for f in families for suffix in SERIES_SUFFIXES.get(f.type, ("",))}
    labels = {"instance", "job", "le"}
    for value in vars(metrics).values():
        labels.update(getattr(value, "_labelnames", ()))  # where prometheus_client keeps label names
    labels.update(label for family in families for sample in family.samples for label in sample.labels)
    return names, labels


def dashboard_panels() -> list[dict[str, object]]:
    panels = json.loads(DASHBOARD.read_text())["panels"]
    nested = [child for panel in panels for child in panel.get("panels", [])]
    return panels + nested


def dashboard_exprs() -> list[str]:
    exprs = [target["expr"] for panel in dashboard_panels() for target in panel.get("targets", [])]
    templating = json.loads(DASHBOARD.read_text())["templating"]["list"]
    exprs += [variable["definition"] for variable in templating if variable.get("type") == "query"]
    return exprs


def test_dashboard_is_a_grafana_model() -> None:
    model = json.loads(DASHBOARD.read_text())
    assert model["uid"] == "dtn-bridge" and model["title"] and model["schemaVersion"] >= 36
    panels = dashboard_panels()
    ids = [panel["id"] for panel in panels]
    assert len(ids) == len(set(ids)), "panel ids must be unique"
    for panel in panels:
        assert {"x", "y", "w", "h"} <= set(panel["gridPos"]), panel["title"]
        if panel["type"] == "row":
            continue
        targets = panel["targets"]
        assert targets and panel.get("description"), panel["title"]
        refs = [target["refId"] for target in targets]
        assert len(refs) == len(set(refs)), panel["title"]
        assert panel["datasource"]["uid"] == "${datasource}"


def test_every_dashboard_expr_uses_defined_metrics() -> None:
    import re

    names, labels = defined_series()
    exprs = dashboard_exprs()
    assert exprs
    used: set[str] = set()
    for expr in exprs:
        found = set(re.findall(r"\bdtn_bridge_[a-z0-9_]+", expr))
        assert found, f"no dtn-bridge metric in {expr!r}"  # process_* series are scoped by dtn_bridge_build_info
        found |= set(re.findall(r"\bprocess_[a-z0-9_]+", expr))
        assert found <= names, f"{expr!r} uses undefined {sorted(found - names)}"
        used |= found
        for group in re.findall(r"\bby\s*\(([^)]*)\)", expr):
            grouped = {label.strip() for label in group.split(",") if label.strip()}
            assert grouped <= labels, f"{expr!r} groups by unknown labels {sorted(grouped - labels)}"
    # and every bridge metric is on the dashboard somewhere
    shown = {name.removesuffix("_total").removesuffix("_bucket").removesuffix("_sum").removesuffix("_count")
             for name in used}
    families = {f.name for f in text_string_to_metric_families(Metrics().exposition().decode())}
    bridge = {f for f in families if f.startswith("dtn_bridge_")}
    missing = bridge - shown
    assert not missing, f"metrics not on the dashboard: {sorted(missing)}"
