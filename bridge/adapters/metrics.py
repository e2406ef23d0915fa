"""Prometheus metrics and the small HTTP server that exposes them with the health and readiness probes.

Every metric lives in the `Metrics` object's own CollectorRegistry, never prometheus_client's global one:
two daemons in one process (the tests) or a re-created service never clash over metric names, and `/metrics`
shows only what the bridge defines. The bridge's names start with `dtn_bridge_`; the daemon process's own are the
standard `process_*` every exporter has (so the usual dashboards and alerts work), and its worker processes' CPU
and memory are `dtn_bridge_worker_*`, read from /proc. No `_created` series (prometheus_client's creation
timestamps: a second series per counter that nobody graphs).

    metrics = Metrics()
    server = MetricsServer(metrics, config.metrics.address, config.metrics.port,
                           readiness=make_readiness(lambda: publisher.connected, config.folders))
    server.start()
    metrics.files_received.inc()
    ...
    server.stop()

Endpoints: `/metrics` (Prometheus text format), `/healthz` (200 `ok` while the process serves at all),
`/readyz` (200 when the readiness callable says ready, else 503; both answer JSON
`{"ready": ..., "reasons": [...]}`).
"""

from __future__ import annotations

import json
import os
import platform
import socket
import threading
from collections.abc import Callable, Iterable, Iterator
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Protocol, Self

import structlog
from prometheus_client import (
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    Info,
    ProcessCollector,
    disable_created_metrics,
    generate_latest,
)
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from bridge import __version__
from bridge.adapters.processes import live_children
from bridge.errors import StorageError

__all__ = [
    "METRICS_CONTENT_TYPE",
    "PREFIX",
    "PUBLISH_LATENCY_BUCKETS",
    "GovernanceDecision",
    "Metrics",
    "MetricsServer",
    "Readiness",
    "WorkerCollector",
    "folders_writable",
    "make_readiness",
]

log = structlog.get_logger("dtn_bridge.metrics")

PREFIX = "dtn_bridge_"
#: Drop-to-confirm is tens of milliseconds for a small file renamed into the folder, adds the stability wait
#: (watch.stable_seconds, 2 s by default) for files written in place, and grows with the file (a 1 GiB file is two
#: streaming passes plus every confirm): buckets from 25 ms to an hour.
PUBLISH_LATENCY_BUCKETS = (
    0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.0, 3.0, 5.0, 7.5, 10.0, 15.0, 30.0, 60.0, 120.0, 300.0, 600.0, 1800.0, 3600.0,
)

#: generate_latest() writes the classic text format; newer prometheus-client versions name a 1.0.0 format in
#: their CONTENT_TYPE_LATEST, which Prometheus 2.x does not know; the bridge's names need no escaping.
METRICS_CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"

Readiness = Callable[[], tuple[bool, list[str]]]


class GovernanceDecision(Protocol):
    """What the governance counter reads of a decision (bridge.rules.model.Decision has it)."""

    @property
    def rule(self) -> str: ...
    @property
    def flow(self) -> str | None: ...
    @property
    def participant(self) -> str | None: ...
    @property
    def outcome(self) -> str: ...


class Metrics:
    """The bridge's metrics in a private registry; attributes are the metric names without prefix/suffix."""

    def __init__(self, registry: CollectorRegistry | None = None,
                 workers: Callable[[], Iterable[tuple[str, int]]] = live_children) -> None:
        """`workers`: the (role, pid) of each worker process whose CPU and memory to show."""
        disable_created_metrics()  # type: ignore[no-untyped-call]  # process-wide; the bridge wants none anywhere
        self.registry = registry if registry is not None else CollectorRegistry(auto_describe=True)

        def counter(name: str, documentation: str, labels: tuple[str, ...] = ()) -> Counter:
            return Counter(PREFIX + name, documentation, labels, registry=self.registry)

        def gauge(name: str, documentation: str) -> Gauge:
            return Gauge(PREFIX + name, documentation, registry=self.registry)

        # inbound files
        self.files_received = counter("files_received", "Inbound DTN files claimed for processing.")
        self.files_published = counter(
            "files_published", "Inbound files whose events the broker all confirmed, then archived.")
        self.files_duplicate = counter(
            "files_duplicate", "Inbound files archived unpublished: the same content was already published.")
        self.files_quarantined = counter(
            "files_quarantined", "Inbound files quarantined, by the rule of their first defect "
            "(e.g. item-format, max-file-bytes, internal-error).", ("rule",))
        # inbound events (publisher confirms)
        self.events_published = counter("events_published", "Events (flow events, manifests) sent.")
        self.events_confirmed = counter("events_confirmed", "Events the broker confirmed.")
        self.events_returned = counter("events_returned", "Events returned by the broker as unroutable.")
        self.events_nacked = counter("events_nacked", "Events the broker nacked.")
        # outbound
        self.outbound_events_written = counter(
            "outbound_events_written", "Outbound events written into DTN files for the gateway.")
        self.outbound_events_rejected = counter(
            "outbound_events_rejected", "Outbound events dead-lettered, by reject code.", ("code",))
        # governance
        self.governance_decisions = counter(
            "governance_decisions", "Governance rule decisions, by rule, flow, participant and outcome.",
            ("rule", "flow", "participant", "outcome"))
        # state
        self.queue_backlog = gauge("queue_backlog", "Files waiting in the inbound folder.")
        self.broker_connected = gauge(
            "broker_connected", "1 while connected to the broker with the topology declared, else 0.")
        self.files_in_flight = gauge("files_in_flight", "Files claimed and not yet archived or quarantined.")
        self.outbound_writing_held = gauge(
            "outbound_writing_held", "1 while the outbound side writes nothing (a full disk, the broker away, a "
            "worker lost): events wait in their queue and it retries; else 0.")
        self.publish_latency = Histogram(
            PREFIX + "publish_latency_seconds",
            "Seconds from a file's arrival in the inbound folder to the broker's confirm of its last event "
            "(published files only).", buckets=PUBLISH_LATENCY_BUCKETS, registry=self.registry)
        # the daemon process (memory, CPU, open files, start time), from /proc, by the standard names: process_*
        self.process = ProcessCollector(registry=self.registry)
        self.workers = WorkerCollector(workers)
        self.registry.register(self.workers)
        self.build_info = Info(PREFIX + "build", "The running version (value 1).", registry=self.registry)
        self.build_info.info({"version": __version__, "python": platform.python_version()})

    def file_settled(self, outcome: str, *, rule: str | None = None, latency: float | None = None) -> None:
        """Count one settled inbound file (`FileOutcome.outcome`): archived, duplicate or quarantined."""
        if outcome == "archived":
            self.files_published.inc()
            if latency is not None:
                self.publish_latency.observe(max(0.0, latency))
        elif outcome == "duplicate":
            self.files_duplicate.inc()
        elif outcome == "quarantined":
            self.files_quarantined.labels(rule=rule or "unknown").inc()
        else:
            raise ValueError(f"unknown file outcome {outcome!r}")

    def governance_decision(self, decision: GovernanceDecision, count: int = 1) -> None:
        """Count a rule decision (bridge.rules.model.Decision), `count` times; no flow or participant counts as
        "none"."""
        self.governance_decisions.labels(rule=decision.rule, flow=decision.flow or "none",
                                         participant=decision.participant or "none",
                                         outcome=decision.outcome).inc(count)

    def set_broker_connected(self, connected: bool) -> None:
        """The broker gauge as 0/1."""
        self.broker_connected.set(1 if connected else 0)

    def set_outbound_held(self, error: str | None) -> None:
        """The outbound side stopped writing for `error`, or writes again (None)."""
        self.outbound_writing_held.set(0 if error is None else 1)

    def exposition(self) -> bytes:
        """The registry in the Prometheus text format (what /metrics serves)."""
        return generate_latest(self.registry)


class WorkerCollector(Collector):
    """CPU and memory of the worker processes (build, check), read from /proc/<pid>/stat and statm at each scrape:
    the daemon's own process_* metrics do not count its children. A worker that ends between the listing and the
    read is left out of that scrape."""

    def __init__(self, workers: Callable[[], Iterable[tuple[str, int]]]) -> None:
        self._workers = workers
        self._ticks = os.sysconf("SC_CLK_TCK")
        self._page = os.sysconf("SC_PAGE_SIZE")

    def collect(self) -> Iterator[Metric]:
        cpu = CounterMetricFamily(PREFIX + "worker_cpu_seconds", "CPU time (user and system) of each worker "
                                  "process.", labels=("role", "pid"))
        resident = GaugeMetricFamily(PREFIX + "worker_resident_memory_bytes", "Resident memory of each worker "
                                     "process.", labels=("role", "pid"))
        count = GaugeMetricFamily(PREFIX + "workers", "Worker processes running, by role.", labels=("role",))
        running: dict[str, int] = {}
        for role, pid in self._workers():
            try:
                with open(f"/proc/{pid}/stat", "rb") as stat:
                    fields = stat.read().rsplit(b")", 1)[1].split()  # after the command name, which may hold spaces
                with open(f"/proc/{pid}/statm", "rb") as statm:
                    pages = int(statm.read().split()[1])
            except (OSError, IndexError, ValueError):
                continue
            labels = (role, str(pid))
            cpu.add_metric(labels, (int(fields[11]) + int(fields[12])) / self._ticks)  # utime, stime (fields 14, 15)
            resident.add_metric(labels, pages * self._page)
            running[role] = running.get(role, 0) + 1
        for role, number in sorted(running.items()):
            count.add_metric((role,), number)
        yield cpu
        yield resident
        yield count

    def describe(self) -> Iterator[Metric]:
        """Nothing to check at registration (the families are built per scrape)."""
        return iter(())


def folders_writable(paths: Iterable[str | os.PathLike[str]]) -> list[str]:
    """Problems that stop the bridge writing to these folders (empty when all is well), for /readyz.

    `os.access` reports a read-only mount (ProtectSystem=strict without a ReadWritePaths entry) as well as
    missing permissions, without leaving files behind.
    """
    problems: list[str] = []
    for raw in paths:
        path = Path(raw)
        if not path.exists():
            problems.append(f"{path}: does not exist")
        elif not path.is_dir():
            problems.append(f"{path}: not a folder")
        elif not os.access(path, os.W_OK | os.X_OK):
            problems.append(f"{path}: not writable")
    return problems


def make_readiness(broker_connected: Callable[[], bool],
                   folders: Iterable[str | os.PathLike[str]],
                   outbound: Callable[[], str | None] = lambda: None) -> Readiness:
    """The usual readiness check: connected to the broker, every folder writable, and the outbound side consuming
    and writing (`outbound` says what stops it, or None)."""
    folder_list = [Path(folder) for folder in folders]

    def check() -> tuple[bool, list[str]]:
        reasons = [] if broker_connected() else ["broker: not connected"]
        problem = outbound()
        if problem is not None:
            reasons.append(f"outbound: {problem}")
        reasons.extend(folders_writable(folder_list))
        return (not reasons, reasons)

    return check


def _always_ready() -> tuple[bool, list[str]]:
    return True, []


class MetricsServer:
    """`/metrics`, `/healthz` and `/readyz` over HTTP on a daemon thread (stdlib ThreadingHTTPServer).

    A slow scrape never blocks the bridge: each request has its own thread and only reads the registry.
    """

    def __init__(self, metrics: Metrics, address: str, port: int,
                 readiness: Readiness = _always_ready) -> None:
        self.metrics = metrics
        self.address = address
        self.requested_port = port
        self.readiness = readiness
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None

    @property
    def port(self) -> int:
        """The port actually bound (the requested one, or the kernel's choice for port 0)."""
        if self._server is None:
            raise RuntimeError("the metrics server is not started")
        return int(self._server.server_address[1])

    @property
    def url(self) -> str:
        """Base URL of the running server, for logs and tests."""
        host = self.address if ":" not in self.address else f"[{self.address}]"
        return f"http://{host}:{self.port}"

    def start(self) -> None:
        """Bind and serve; a port in use or a bad address is a StorageError naming both."""
        if self._server is not None:
            return
        handler = _handler_for(self.metrics, self.readiness)
        server_class = _IPv6Server if ":" in self.address else ThreadingHTTPServer
        try:
            server = server_class((self.address, self.requested_port), handler)
        except OSError as exc:
            raise StorageError(f"metrics endpoint cannot listen on {self.address}:{self.requested_port}: "
                               f"{exc.strerror or exc}") from exc
        server.daemon_threads = True
        self._server = server
        self._thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.25},
                                        name="metrics-http", daemon=True)
        self._thread.start()
        log.info("metrics_listening", address=self.address, port=self.port)

    def stop(self) -> None:
        """Stop serving and release the port."""
        server, thread = self._server, self._thread
        if server is None:
            return
        server.shutdown()
        server.server_close()
        if thread is not None:
            thread.join(timeout=5)
        self._server = None
        self._thread = None

    def __enter__(self) -> Self:
        self.start()
        return self

    def __exit__(self, *_exc: object) -> None:
        self.stop()


class _IPv6Server(ThreadingHTTPServer):
    """metrics.address may be an IPv6 literal (`::1`, `::`)."""

    address_family = socket.AF_INET6


def _handler_for(metrics: Metrics, readiness: Readiness) -> type[BaseHTTPRequestHandler]:
    """A request handler class bound to this server's metrics and readiness check."""

    class Handler(BaseHTTPRequestHandler):
        server_version = "dtn-bridge"
        sys_version = ""

        def do_GET(self) -> None:
            self._serve(head=False)

        def do_HEAD(self) -> None:
            self._serve(head=True)

        def _serve(self, *, head: bool) -> None:
            path = self.path.split("?", 1)[0]
            if path == "/metrics":
                self._send(HTTPStatus.OK, METRICS_CONTENT_TYPE, metrics.exposition(), head)
            elif path == "/healthz":
                self._send(HTTPStatus.OK, "text/plain; charset=utf-8", b"ok\n", head)
            elif path == "/readyz":
                try:
                    ready, reasons = readiness()
                except Exception as exc:  # noqa: BLE001 (a broken check means "not ready", never a 500 with a traceback)
                    ready, reasons = False, [f"readiness check failed: {type(exc).__name__}: {exc}"]
                body = json.dumps({"ready": bool(ready), "reasons": list(reasons)}).encode() + b"\n"
                status = HTTPStatus.OK if ready else HTTPStatus.SERVICE_UNAVAILABLE
                self._send(status, "application/json", body, head)
            else:
                self._send(HTTPStatus.NOT_FOUND, "text/plain; charset=utf-8",
                           b"not found; try /metrics, /healthz or /readyz\n", head)

        def _send(self, status: HTTPStatus, content_type: str, body: bytes, head: bool) -> None:
            self.send_response(status)
            self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(body)))
            self.send_header("Cache-Control", "no-store")
            self.end_headers()
            if not head:
                self.wfile.write(body)

        def log_message(self, format: str, *args: object) -> None:
            """Requests go to the structured log at debug level, not to stderr as http.server does."""
            log.debug("metrics_request", client=self.client_address[0], request=format % args)

    return Handler
