"""End-to-end pipeline benchmark: the real daemon, from a dropped file to the archive, against a bare publisher.

    .venv/bin/python bench/bench_pipeline.py                          # quick: 10 files x 5,000 instances (~2 min)
    .venv/bin/python bench/bench_pipeline.py --files N --instances M  # N files (a tenth D0010002) of M instances
    .venv/bin/python bench/bench_pipeline.py --full                   # the issue's corpus: 100 x 10,000 = 1M events

Needs RabbitMQ at DTN_TEST_AMQP_URL (default amqp://guest:guest@127.0.0.1:5672/%2F). Everything runs on a fresh
configuration in a temp folder of its own, with a unique broker topology suffix; both are deleted at the end.

1. Corpus: deterministic D0275001 files (and a few D0010002, one in ten) generated once into bench/out/ and reused.
2. Throughput: `python -m bridge run` as a subprocess (log level warning); once var/state/status.json says
   "running", every file is dropped the way a gateway does (written under a dot-temp name, renamed into the inbound
   folder). Timed from the first drop until every file is in the archive. Events = flow instances (level-1 groups).
   Peak RSS (VmHWM) and CPU seconds (utime + stime) of the daemon and its worker processes are read from /proc
   before it is stopped; CPU per event is also split by process, RabbitMQ's Erlang VM (beam.smp) included.
3. Latency: with the daemon idle, 20 single-instance D0010 files are dropped one at a time, each waiting for its
   archive; median and p99 (nearest rank) of drop-to-archive. Files are renamed into the folder, as gateways do,
   so the watcher takes them at once (watch.trust_renames, the default); stable_seconds keeps its default (2 s).
4. Ceiling: RabbitPublisher.publish_all (asynchronous confirms, window 1000, persistent + mandatory) sends as many
   pre-serialized real signed event bodies (same flows, same average size) to a topology of the same kind (topic
   exchange with a stream queue bound to #).

Targets: >= 9,000 events/s end to end, >= 50% of the ceiling, p99 latency < 250 ms.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Iterator
from functools import cache
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

import orjson
import pika

from bridge.adapters.rabbitmq import RabbitPublisher
from bridge.adapters.rabbitmq.topology import Topology
from bridge.config import load_config
from bridge.dtn.definitions import DefinitionSet, load_definitions
from bridge.dtn.reader import FlowFileReader
from bridge.dtn.synthetic import synthetic_file
from bridge.inbound.flowfile import check_file, file_events
from bridge.ports import OutgoingMessage
from bridge.rules.decide import route_event
from bridge.service import ensure_folders, load_rules
from bridge.signing import Signer
from bridge.signing.keys import write_private_key

OUT = Path(__file__).resolve().parent / "out"
CORPUS = "v2"  # in the cached files' names: bump when bridge/dtn/synthetic.py generates otherwise (v2: MPAN
# check digits and period counts that fit their dates, issue 13)
URL = os.environ.get("DTN_TEST_AMQP_URL", "amqp://guest:guest@127.0.0.1:5672/%2F")
LEVEL1 = ("25B|", "026|")  # the level-1 (flow instance) groups of D0275 and D0010
LATENCY_DROPS = 20
CLK_TCK = os.sysconf("SC_CLK_TCK")

TARGET_RATE = 9_000.0
TARGET_RATIO = 0.5
TARGET_P99 = 0.250


# ------------------------------------------------------------------------------------------------ corpus


@cache
def definitions() -> DefinitionSet:
    return load_definitions(REPO / "flow_definitions")


def make_file(reference: str, instances: int, seed: int) -> Path:
    """Generate (once) a valid file of `instances` flow instances, one level-1 group each (fanout 1)."""
    OUT.mkdir(exist_ok=True)
    path = OUT / f"pipeline-{reference}-{instances}-{seed}-{CORPUS}.txt"
    if not path.exists():
        definition = definitions()[reference]
        tmp = path.with_suffix(".part")
        with open(tmp, "w", encoding="utf-8", newline="") as stream:
            stream.writelines(synthetic_file(definition, seed, instances=instances, fanout=1, file_number=seed))
        tmp.rename(path)
    return path


def corpus(files: int, instances: int) -> list[Path]:
    """`files` files of `instances` each: one in ten (at least one) D0010002, the rest D0275001."""
    d0010 = max(1, files // 10) if files > 1 else 0
    paths = [make_file("D0010002", instances, 20_000 + n) for n in range(d0010)]
    paths += [make_file("D0275001", instances, 10_000 + n) for n in range(files - d0010)]
    return paths


def count_events(path: Path) -> int:
    """Flow instances of a file: its level-1 group records."""
    with open(path, "rb") as stream:
        return sum(1 for line in stream if line.startswith((b"25B|", b"026|")))


# ------------------------------------------------------------------------------------------------ the bridge


def write_config(root: Path, suffix: str) -> Path:
    """A configuration like tests/e2e/conftest.py's, under `root`, with a fresh signing key and unique broker names."""
    (root / "keys").mkdir(parents=True, exist_ok=True)
    signer = Signer.generate()
    write_private_key(root / "keys" / "bridge.key.pem", signer.private_key)
    (root / "keys" / "bridge.jwks.json").write_text(json.dumps(signer.public_jwks()))
    sections = {
        "participant": {"id": "DTNB", "role": "X"},
        "broker": {"urls": [URL], "topology_suffix": suffix, "heartbeat": 10},
        "watch": {"inbound": "var/dtn/inbound", "rescan_seconds": 1.0,
                  "poll_interval": 0.2},
        "spool": {"processing": "var/processing", "archive": "var/archive", "quarantine": "var/quarantine"},
        "state": {"dir": "var/state"},
        "signing": {"key": "keys/bridge.key.pem", "trust": "keys/bridge.jwks.json"},
        "flows": {"definitions": str(REPO / "flow_definitions")},
        "outbound": {"folder": "var/dtn/outbound", "batch_seconds": 2},
        "log": {"level": "warning", "format": "json"},
        "rules": {"addressee": {"enforce": False}},  # synthetic files are addressed to made-up participants
    }
    path = root / "bridge.yaml"
    path.write_text(json.dumps(sections, indent=2))  # JSON is YAML
    ensure_folders(load_config(path))
    return path


class Daemon:
    """`python -m bridge run` as a subprocess, with its folders and /proc readings."""

    def __init__(self, root: Path, config_path: Path) -> None:
        self.root = root
        self.config_path = config_path
        self.inbound = root / "var" / "dtn" / "inbound"
        self.archive = root / "var" / "archive"
        self.quarantine = root / "var" / "quarantine"
        self.process: subprocess.Popen[bytes] | None = None
        self.peak_rss_kb: dict[int, int] = {}
        self._stop_polling = threading.Event()

    def start(self, timeout: float = 60.0) -> None:
        with open(self.root / "daemon.log", "ab") as log:  # the child keeps its own copy of the descriptor
            self.process = subprocess.Popen([sys.executable, "-m", "bridge", "run", "--config", str(self.config_path)],
                                            stdout=log, stderr=log, cwd=REPO)
        status = self.root / "var" / "state" / "status.json"
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            self.check_alive()
            try:
                values = json.loads(status.read_text() or "{}")
            except (FileNotFoundError, json.JSONDecodeError):
                values = {}
            if values.get("pid") == self.process.pid and values.get("state") == "running":
                threading.Thread(target=self._poll_rss, daemon=True).start()
                return
            time.sleep(0.05)
        raise SystemExit(f"the daemon did not report running within {timeout} s (see {self.root}/daemon.log)")

    def check_alive(self) -> None:
        assert self.process is not None
        if self.process.poll() is not None:
            log = (self.root / "daemon.log").read_text(errors="replace")[-3000:]
            raise SystemExit(f"the daemon exited with {self.process.returncode}:\n{log}")

    def _poll_rss(self) -> None:
        while not self._stop_polling.wait(0.1):
            self.read_rss()

    def pids(self) -> list[int]:
        """The daemon and its worker processes (its children: the build worker, the outbound check workers)."""
        assert self.process is not None
        pids = [self.process.pid]
        for task in Path(f"/proc/{self.process.pid}/task").glob("*/children"):
            try:
                pids += [int(pid) for pid in task.read_text().split()]
            except (FileNotFoundError, ProcessLookupError, ValueError):
                pass
        return pids

    def read_rss(self) -> None:
        """Each process's peak RSS (VmHWM), kept separately (each is a high-water mark)."""
        for pid in self.pids():
            try:
                for line in Path(f"/proc/{pid}/status").read_text().splitlines():
                    if line.startswith("VmHWM:"):
                        self.peak_rss_kb[pid] = max(self.peak_rss_kb.get(pid, 0), int(line.split()[1]))
            except (FileNotFoundError, ProcessLookupError, ValueError):
                pass

    def cpu_seconds(self) -> float:
        """utime + stime of the daemon and its worker processes."""
        return sum(self.cpu_by_process().values())

    def cpu_by_process(self) -> dict[str, float]:
        """utime + stime by process: 'daemon', and 'worker <pid>' for each worker process."""
        assert self.process is not None
        return {("daemon" if pid == self.process.pid else f"worker {pid}"): process_cpu(pid) for pid in self.pids()}

    def drop(self, source: Path, name: str) -> None:
        """Written under a dot-temp name, then renamed: what a gateway does."""
        temporary = self.inbound / f".{name}.tmp"
        shutil.copyfile(source, temporary)
        temporary.rename(self.inbound / name)

    def archived(self) -> int:
        return sum(1 for p in self.archive.rglob("*") if p.is_file())

    def wait_archived(self, count: int, timeout: float, poll: float = 0.01) -> None:
        deadline = time.monotonic() + timeout
        while self.archived() < count:
            if time.monotonic() > deadline:
                raise SystemExit(f"only {self.archived()} of {count} files archived after {timeout} s")
            if any(self.quarantine.iterdir()):
                names = sorted(p.name for p in self.quarantine.iterdir())
                raise SystemExit(f"files were quarantined: {names[:4]} (see {self.quarantine})")
            self.check_alive()
            time.sleep(poll)

    def stop(self) -> None:
        self._stop_polling.set()
        if self.process is None or self.process.poll() is not None:
            return
        self.process.send_signal(signal.SIGTERM)
        try:
            self.process.wait(60)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait(10)


def process_cpu(pid: int) -> float:
    """utime + stime of one process, in seconds (0 once it is gone)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except (FileNotFoundError, ProcessLookupError):
        return 0.0
    fields = stat[stat.rindex(")") + 2:].split()  # after "pid (comm) ": fields from 3 (state) on
    return (int(fields[11]) + int(fields[12])) / CLK_TCK  # utime (14) + stime (15)


def broker_pids() -> list[int]:
    """The local RabbitMQ's Erlang VM (beam.smp), whose CPU the runs also cost."""
    pids = []
    for comm in Path("/proc").glob("[0-9]*/comm"):
        try:
            if comm.read_text().strip().startswith("beam"):
                pids.append(int(comm.parent.name))
        except (FileNotFoundError, ProcessLookupError):
            pass
    return pids


def broker_cpu() -> float:
    return sum(process_cpu(pid) for pid in broker_pids())


def cpu_split(before: dict[str, float], after: dict[str, float], events: int) -> str:
    """CPU per event by process between two readings, e.g. 'daemon 120 us + worker 80 us + broker 60 us'."""
    parts = [f"{name.split()[0]} {(after[name] - before.get(name, 0.0)) / events * 1e6:,.0f} µs" for name in after]
    return " + ".join(parts)


# ------------------------------------------------------------------------------------------------ ceiling


def signed_samples(paths: list[Path], config_path: Path, per_flow: int = 2000) -> dict[str, list[tuple[str, bytes]]]:
    """Up to `per_flow` real (routing key, signed body) pairs per flow, built as the daemon builds them."""
    config = load_config(config_path)
    reader = FlowFileReader(definitions())
    rules = load_rules(config, definitions())
    signer = Signer.from_key_file(config.signing.key)
    samples: dict[str, list[tuple[str, bytes]]] = {}
    for path in paths:
        flow = path.name.split("-")[1]
        if flow in samples:
            continue
        checked = check_file(path, reader)
        assert checked.ok, checked.describe_defects()[:3]
        bodies: list[tuple[str, bytes]] = []
        for event in file_events(path, reader, checked):
            for output in route_event(event, "inbound", rules).outputs:
                bodies.append((output.routing_key, orjson.dumps(signer.sign(output.event))))
            if len(bodies) >= per_flow:
                break
        samples[flow] = bodies
    return samples


def ceiling(plan: list[tuple[str, int]], samples: dict[str, list[tuple[str, bytes]]],
            topology: Topology) -> tuple[float, int, float]:
    """Events/s of a bare windowed-confirm publisher sending `plan` (flow, events) of pre-serialized bodies."""
    total = sum(events for _flow, events in plan)

    def messages() -> Iterator[OutgoingMessage]:
        n = 0
        for flow, events in plan:
            bodies = samples[flow]
            for i in range(events):
                key, body = bodies[i % len(bodies)]
                yield OutgoingMessage(key, body, f"ceiling-{n}")
                n += 1

    size = sum(len(samples[flow][i % len(samples[flow])][1]) for flow, events in plan for i in range(events))
    publisher = RabbitPublisher([URL], topology=topology, window=1000, client_name="dtn-bridge-bench-ceiling")
    publisher.connect()  # declares the topology: not timed
    try:
        cpu = {"publisher": process_cpu(os.getpid()), "broker": broker_cpu()}
        start = time.perf_counter()
        result = publisher.publish_all(messages(), timeout=120 + total / 500)
        elapsed = time.perf_counter() - start
        split = cpu_split(cpu, {"publisher": process_cpu(os.getpid()), "broker": broker_cpu()}, total)
    finally:
        publisher.close()
    assert result.confirmed == total, result
    return total / elapsed, total, size / total, split


def delete_topology(topology: Topology) -> None:
    connection = pika.BlockingConnection(pika.URLParameters(URL))
    try:
        channel = connection.channel()
        for queue in topology.queues:
            channel.queue_delete(queue.name)
        for exchange in (topology.exchange, topology.dead_letter_exchange):
            channel.exchange_delete(exchange)
    finally:
        connection.close()


# ------------------------------------------------------------------------------------------------ main


def verdict(ok: bool) -> str:
    return "PASS" if ok else "MISS"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--files", type=int, default=10, help="files in the corpus (one in ten D0010002)")
    parser.add_argument("--instances", type=int, default=5_000, help="flow instances per file")
    parser.add_argument("--full", action="store_true", help="the issue's corpus: 100 files x 10,000 instances")
    args = parser.parse_args()
    if args.full:
        args.files, args.instances = 100, 10_000

    started = time.perf_counter()
    paths = corpus(args.files, args.instances)
    events_per_file = [count_events(p) for p in paths]
    events = sum(events_per_file)
    size = sum(p.stat().st_size for p in paths)
    latency_files = [make_file("D0010002", 1, 30_000 + n) for n in range(LATENCY_DROPS)]
    print(f"corpus: {len(paths)} files ({sum('D0010' in p.name for p in paths)} D0010002), "
          f"{size / 1e6:.1f} MB, {events:,} events (flow instances); ready in {time.perf_counter() - started:.1f} s")

    suffix = f".bench-pipeline-{uuid.uuid4().hex[:8]}"
    topology = Topology().with_suffix(suffix)
    ceiling_topology = Topology().with_suffix(suffix + "-ceiling")
    root = Path(tempfile.mkdtemp(prefix="dtn-bench-pipeline-"))
    daemon: Daemon | None = None
    try:
        config_path = write_config(root, suffix)
        daemon = Daemon(root, config_path)
        daemon.start()
        cpu_at_start = daemon.cpu_seconds()  # the start-up (imports, connecting) is not the pipeline's
        processes_at_start = {**daemon.cpu_by_process(), "broker": broker_cpu()}

        # -- throughput
        start = time.perf_counter()
        for n, path in enumerate(paths):
            daemon.drop(path, f"bench{n:04d}_{path.name}")
        dropped = time.perf_counter() - start
        daemon.wait_archived(len(paths), timeout=300 + events / 500)
        elapsed = time.perf_counter() - start
        daemon.read_rss()
        cpu_throughput = daemon.cpu_seconds() - cpu_at_start
        split = cpu_split(processes_at_start, {**daemon.cpu_by_process(), "broker": broker_cpu()}, events)

        # -- latency, daemon idle
        time.sleep(1.0)
        latencies = []
        for n, path in enumerate(latency_files):
            before = daemon.archived()
            t0 = time.perf_counter()
            daemon.drop(path, f"latency{n:02d}_{path.name}")
            daemon.wait_archived(before + 1, timeout=30, poll=0.002)
            latencies.append(time.perf_counter() - t0)

        daemon.read_rss()
        cpu = daemon.cpu_seconds()
        peak_mb = sum(daemon.peak_rss_kb.values()) / 1024
        peaks = " + ".join(f"{kb / 1024:,.0f}" for kb in daemon.peak_rss_kb.values())
        daemon.stop()

        # -- ceiling, daemon stopped
        samples = signed_samples(paths, config_path)
        plan = [(p.name.split("-")[1], n) for p, n in zip(paths, events_per_file)]
        ceiling_rate, ceiling_events, average_body, ceiling_split = ceiling(plan, samples, ceiling_topology)
    finally:
        if daemon is not None:
            daemon.stop()
        for each in (topology, ceiling_topology):
            try:
                delete_topology(each)
            except Exception as exc:  # noqa: BLE001 (whatever fails is reported; cleaning goes on)
                print(f"cleanup of {each.exchange} failed: {exc!r}", file=sys.stderr)
        shutil.rmtree(root, ignore_errors=True)

    rate = events / elapsed
    ratio = rate / ceiling_rate
    ordered = sorted(latencies)
    median = statistics.median(ordered)
    p99 = ordered[math.ceil(0.99 * len(ordered)) - 1]
    print(f"end to end (daemon, first drop -> all {len(paths)} archived): {events:,} events in {elapsed:.2f} s = "
          f"{rate:,.0f} events/s ({size / 1e6 / elapsed:.1f} MB/s; dropping took {dropped:.2f} s)")
    print(f"peak RSS (VmHWM, daemon + worker processes): {peak_mb:,.0f} MB ({peaks}); "
          f"CPU (utime+stime) just before stopping: {cpu:.1f} s in all "
          f"(start-up {cpu_at_start:.1f} s, throughput run {cpu_throughput:.1f} s = "
          f"{cpu_throughput / events * 100_000:.1f} s per 100k events)")
    print(f"CPU per event in the throughput run: {split}")
    print(f"latency (idle daemon, {len(latencies)} single-instance D0010 drops, drop -> archived): "
          f"median {median * 1000:.0f} ms, p99 {p99 * 1000:.0f} ms (nearest rank = max of {len(latencies)}), "
          f"min {ordered[0] * 1000:.0f} ms; renamed into the folder, so no stability wait")
    print(f"ceiling (bare RabbitPublisher.publish_all, async confirms, window 1000, persistent+mandatory, "
          f"pre-serialized signed bodies avg {average_body:,.0f} B): {ceiling_events:,} events = "
          f"{ceiling_rate:,.0f} events/s; CPU per event: {ceiling_split}")
    print(f"ratio end to end / ceiling: {ratio:.2f}")
    print(f"target end to end >= {TARGET_RATE:,.0f} events/s: {rate:,.0f}  {verdict(rate >= TARGET_RATE)}")
    print(f"target end to end >= {TARGET_RATIO:.0%} of ceiling: {ratio:.0%}  {verdict(ratio >= TARGET_RATIO)}")
    print(f"target p99 latency < {TARGET_P99 * 1000:.0f} ms: {p99 * 1000:.0f} ms  {verdict(p99 < TARGET_P99)}")


if __name__ == "__main__":
    main()
