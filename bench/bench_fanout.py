"""Fan-out to many participants: one publish of a broadcast event reaching every entitled participant, in the two
topologies RabbitMQ 3.10 offers, measured at several participant counts against the single-consumer case.

    .venv/bin/python bench/bench_fanout.py          # classic queues and a stream; 1, 50, 200, 500 participants x 200
                                                    # events (6,000 for the single consumer): ~4 min on a busy host
    .venv/bin/python bench/bench_fanout.py --quick  # 1, 10, 50 participants x 100 events: ~1.5 min on a busy host
    .venv/bin/python bench/bench_fanout.py --topologies quorum --participants 1,50,200 --addressed 0.5

Needs RabbitMQ at DTN_TEST_AMQP_URL (default amqp://guest:guest@127.0.0.1:5672/%2F) and `rabbitmqctl` (run as root
or the rabbitmq user): everything happens in a virtual host of its own, `dtn-bench-fanout-<random>`, created with
`rabbitmqctl add_vhost` (guest gets permissions on it) and deleted with everything in it at the end, also after a
failure, Ctrl-C or SIGTERM. Nothing outside that vhost is touched.

Topologies (the routing keys are the bridge's: `inbound.<flow><version>.<from>.broadcast` for broadcast events):
- `classic` / `quorum`: a queue per participant (classic, or quorum as docs/operations.md advises for work queues),
  bound to the topic exchange with `inbound.*.*.<MPID>` and `inbound.<flow>.*.broadcast` per broadcast flow it is
  entitled to (here D0269002 and D0270002, the market domain data flows); one consumer on each.
- `stream`: one stream queue bound with `inbound.#`, one stream consumer per participant (offset `first`). RabbitMQ
  3.10 has no stream filtering (x-stream-filter arrived in 3.13), so every consumer receives every event and keeps
  those whose routing key names it or a broadcast flow it is entitled to, client side.

For each topology and participant count: the consumers attach first (`--consumer-processes` processes, one
connection each, a channel per participant, prefetch `--prefetch`, acks with multiple=True); then realistic signed
events (the MDD examples D0269002/D0270002 through the bridge's own parse path, canonicalized and Ed25519-signed by
bridge.signing, a fresh id each) are published through the bridge's RabbitPublisher (persistent, mandatory,
windowed publisher confirms): `--events` of them, or more when fewer participants would get fewer than
`--min-deliveries` in all (so the single consumer's run is long enough to time). `--addressed F` makes a share F of
the events ordinary ones, each addressed to one participant (`inbound.D0010002.<from>.<MPID>`): a queue topology
routes each to one queue, a stream hands it to every consumer. Every consumer checks it received exactly its
events, in publish order, by message id: a lost, duplicated or misrouted event fails the run.

Printed per run: publish rate (confirmed events/s), time until every participant has every event and the drain
after the last confirm, events/s delivered to all and deliveries/s in total, the CPU RabbitMQ's VM and the Python
consumers spent per delivery, broker memory with the consumers attached and idle (the vhost's queue, channel and
connection processes, from `rabbitmqctl eval`; and the node's erlang:memory(total) delta) and the node's peak RSS
growth while the events flow. Then ratios against 1 participant and the cost per added participant (least-squares
slopes over the participant counts). The broker and the 2 cores are shared with other work: the node-wide figures
(RSS, node memory delta, the VM's CPU) include whatever else runs; the per-vhost memory does not.
"""

from __future__ import annotations

import argparse
import contextlib
import itertools
import math
import multiprocessing
import os
import queue
import signal
import subprocess
import sys
import threading
import time
import urllib.parse
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import FrameType
from typing import Any, Self

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

import pika
import pika.exceptions

from bridge.adapters.rabbitmq import RabbitPublisher
from bridge.adapters.rabbitmq.topology import Topology
from bridge.dtn.definitions import load_definitions
from bridge.dtn.reader import FlowFileReader
from bridge.errors import BrokerError
from bridge.inbound.flowfile import check_file, file_events
from bridge.ports import OutgoingMessage
from bridge.signing import Signer, canonicalize

URL = os.environ.get("DTN_TEST_AMQP_URL", "amqp://guest:guest@127.0.0.1:5672/%2F")
EXCHANGE = "dtn.events"
BROADCAST_FLOWS = ("D0269002", "D0270002")  # market domain data: sent to every participant
ADDRESSED_FLOW = "D0010002"
SENDER = "SYNA"
TOPOLOGIES = ("classic", "quorum", "stream")
CLK_TCK = os.sysconf("SC_CLK_TCK")
BACKGROUND_SECONDS = 1.0


# ------------------------------------------------------------------------------------------------ pure figures


@dataclass(frozen=True, slots=True)
class Run:
    """The figures of one topology at one participant count."""

    topology: str
    participants: int
    events: int
    deliveries: int  # wanted deliveries: what the participants keep
    received: int  # what the broker handed to consumers (a stream hands every event to every consumer)
    publish_seconds: float
    total_seconds: float  # first publish -> every participant has every event
    drain_seconds: float  # last confirm -> every participant has every event
    broker_cpu_seconds: float  # RabbitMQ's VM during the run, less its background rate just before (shared node)
    client_cpu_seconds: float
    idle_memory: dict[str, int] = field(default_factory=dict)  # vhost queue/channel/connection bytes, node delta
    peak_rss_growth: int = 0

    @property
    def publish_rate(self) -> float:
        return self.events / self.publish_seconds

    @property
    def events_to_all_rate(self) -> float:
        """Events per second delivered to every participant that wants them."""
        return self.events / self.total_seconds

    @property
    def delivery_rate(self) -> float:
        return self.deliveries / self.total_seconds

    @property
    def attributed_memory(self) -> int:
        return sum(v for k, v in self.idle_memory.items() if k != "node")


def slope(xs: Sequence[float], ys: Sequence[float]) -> float:
    """Least-squares slope of ys over xs: the cost of one more participant when xs are participant counts."""
    if len(xs) != len(ys) or len(xs) < 2:
        raise ValueError("a slope needs at least two points")
    mean_x, mean_y = sum(xs) / len(xs), sum(ys) / len(ys)
    spread = sum((x - mean_x) ** 2 for x in xs)
    if spread == 0:
        raise ValueError("a slope needs two different participant counts")
    return sum((x - mean_x) * (y - mean_y) for x, y in zip(xs, ys)) / spread


def events_for(participants: int, events: int, min_deliveries: int) -> int:
    """Events to publish to `participants`: `events`, or more when that would make too short a run to time (the
    single consumer), so that every run hands out at least `min_deliveries`."""
    return max(events, -(-min_deliveries // participants))


def per_delivery_us(seconds: float, run: Run) -> float:
    """Microseconds per message handed to a consumer (wanted or not)."""
    return seconds / max(run.received, 1) * 1e6


def report(runs: Sequence[Run]) -> list[str]:
    """The lines printed after the runs: per topology, ratios against its smallest participant count (1, the
    single consumer) and the marginal cost of a participant."""
    lines: list[str] = []
    for topology in dict.fromkeys(run.topology for run in runs):
        rows = sorted((run for run in runs if run.topology == topology), key=lambda run: run.participants)
        base = rows[0]
        lines.append(f"{topology}: against {base.participants} participant(s) "
                     f"({base.delivery_rate:,.0f} deliveries/s, {base.events_to_all_rate:,.0f} events/s to all)")
        base_cpu = per_delivery_us(base.broker_cpu_seconds, base)
        for run in rows[1:]:
            lines.append(
                f"  {run.participants:4d} participants: deliveries/s x{run.delivery_rate / base.delivery_rate:.2f}, "
                f"events/s to all x{run.events_to_all_rate / base.events_to_all_rate:.3f}, "
                f"publish rate x{run.publish_rate / base.publish_rate:.2f}, "
                f"broker CPU per delivery x{_ratio(per_delivery_us(run.broker_cpu_seconds, run), base_cpu)}, "
                f"idle memory x{_ratio(run.attributed_memory, base.attributed_memory)}")
        if len(rows) >= 2 and len({run.participants for run in rows}) >= 2:
            xs = [float(run.participants) for run in rows]
            memory = slope(xs, [float(run.attributed_memory) for run in rows])
            node = slope(xs, [float(run.idle_memory.get("node", 0)) for run in rows])
            seconds = slope(xs, [run.total_seconds / run.events * 1e6 for run in rows])
            cpu = slope(xs, [run.broker_cpu_seconds / run.events * 1e6 for run in rows])
            lines.append(f"  per added participant: {memory / 1024:,.1f} KiB broker memory idle (vhost processes; "
                         f"node delta {node / 1024:,.1f} KiB), +{seconds:,.1f} us wall and +{cpu:,.1f} us broker "
                         f"CPU per event")
    return lines


def _ratio(value: float, base: float) -> str:
    return f"{value / base:.2f}" if base else "n/a"


# ------------------------------------------------------------------------------------------------ the broker


def rabbitmqctl(*args: str, timeout: float = 120.0) -> str:
    """Run rabbitmqctl; a failure is a clear message, never a traceback."""
    try:
        result = subprocess.run(["rabbitmqctl", "-q", *args], check=False, capture_output=True, text=True,
                                timeout=timeout)
    except FileNotFoundError:
        raise SystemExit("bench_fanout: rabbitmqctl is not installed (it creates and deletes the bench's vhost)")
    except subprocess.TimeoutExpired:
        raise SystemExit(f"bench_fanout: rabbitmqctl {args[0]} did not answer within {timeout:g} s")
    if result.returncode != 0:
        raise SystemExit(f"bench_fanout: rabbitmqctl {' '.join(args[:2])} failed: {result.stderr.strip()[-500:]}")
    return result.stdout.strip()


def parameters(url: str) -> pika.URLParameters:
    """Connection parameters patient enough for a loaded shared broker (declaring hundreds of queues takes it a
    while)."""
    params = pika.URLParameters(url)
    params.socket_timeout = 60
    params.stack_timeout = 120
    params.connection_attempts = 3
    params.retry_delay = 2
    return params


def vhost_url(vhost: str) -> str:
    """DTN_TEST_AMQP_URL with its vhost replaced."""
    parts = urllib.parse.urlsplit(URL)
    return urllib.parse.urlunsplit(parts._replace(path="/" + urllib.parse.quote(vhost, safe="")))


_MEMORY = """
VH = <<"{vhost}">>,
Mem = fun(P) -> erlang:garbage_collect(P), case erlang:process_info(P, memory) of {{memory, M}} -> M; _ -> 0 end end,
In = fun(Info) -> case Info of [{{vhost, VH}}] -> true; _ -> false end end,
[erlang:garbage_collect(P) || Q0 <- rabbit_amqqueue:list(VH), P <- [amqqueue:get_pid(Q0)], is_pid(P)],
Q = lists:sum([M || Info <- rabbit_amqqueue:info_all(VH, [memory]), {{memory, M}} <- Info, is_integer(M)]),
Ch = lists:sum([Mem(P) || P <- rabbit_channel:list(), node(P) =:= node(), In(catch rabbit_channel:info(P, [vhost]))]),
Co = lists:sum([Mem(P) || P <- rabbit_networking:connections_local(), In(catch rabbit_reader:info(P, [vhost]))]),
io:format("~p ~p ~p ~p~n", [Q, Ch, Co, erlang:memory(total)]).
"""


def broker_memory(vhost: str) -> dict[str, int]:
    """Bytes held by the vhost's queue, channel and connection processes (each garbage-collected first, so what
    is counted is live), and the node's total."""
    words = rabbitmqctl("eval", _MEMORY.format(vhost=vhost)).split()
    queues, channels, connections, node = (int(word) for word in words[:4])
    return {"queues": queues, "channels": channels, "connections": connections, "node": node}


def beam_pid() -> int:
    return int(rabbitmqctl("eval", "io:format(\"~s~n\", [os:getpid()]).").split()[0])


def cpu_seconds(pid: int) -> float:
    """utime + stime of a process, from /proc."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLK_TCK


def rss_bytes(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    return 0


class RssPeak:
    """Samples a process's RSS every 50 ms on a thread, keeping the highest."""

    def __init__(self, pid: int) -> None:
        self.pid, self.peak, self._stop = pid, rss_bytes(pid), threading.Event()
        self._thread = threading.Thread(target=self._poll, daemon=True)
        self._thread.start()

    def _poll(self) -> None:
        while not self._stop.wait(0.05):
            self.peak = max(self.peak, rss_bytes(self.pid))

    def stop(self) -> int:
        self._stop.set()
        self._thread.join()
        return self.peak


# ------------------------------------------------------------------------------------------------ events


def mpids(count: int) -> list[str]:
    """Participant ids shaped like MPIDs (four upper-case letters or digits)."""
    return [f"P{n:03d}" if n < 1000 else f"Q{n - 1000:03d}" for n in range(count)]


def templates() -> dict[str, list[dict[str, Any]]]:
    """The events of the shipped examples of the flows used, through the bridge's own parse path."""
    reader = FlowFileReader(load_definitions(REPO / "flow_definitions"))
    out: dict[str, list[dict[str, Any]]] = {}
    for flow in (*BROADCAST_FLOWS, ADDRESSED_FLOW):
        path = REPO / "examples" / f"{flow}.txt"
        out[flow] = list(file_events(path, reader, check_file(path, reader)))
    return out


def plan(count: int, participants: list[str], addressed: float) -> tuple[list[str], list[str]]:
    """The run's events: message ids and targets ('broadcast' or an MPID), deterministic. A share `addressed` of
    them, spread evenly, is addressed to one participant each, in turn."""
    ids = [str(uuid.UUID(int=n + 1)) for n in range(count)]
    targets = []
    for n in range(count):
        taken = math.floor(n * addressed)  # addressed events before this one
        addressed_here = math.floor((n + 1) * addressed) > taken
        targets.append(participants[taken % len(participants)] if addressed_here else "broadcast")
    return ids, targets


def messages(ids: list[str], targets: list[str], events: dict[str, list[dict[str, Any]]],
             signer: Signer) -> list[OutgoingMessage]:
    """Each planned event as the bridge publishes it: its own id, RFC 8785 canonical JSON, an Ed25519 detached
    JWS; the routing key of a broadcast or an addressed event."""
    flows = itertools.cycle(BROADCAST_FLOWS)
    out = []
    for n, (event_id, target) in enumerate(zip(ids, targets)):
        flow = next(flows) if target == "broadcast" else ADDRESSED_FLOW
        pool = events[flow]
        event = {**pool[n % len(pool)], "id": event_id}
        body = signer.signed_json(canonicalize(event, known_types=True))
        out.append(OutgoingMessage(f"inbound.{flow}.{SENDER}.{target}", body, event_id))
    return out


# ------------------------------------------------------------------------------------------------ consumers


@dataclass(slots=True)
class Seat:
    """One participant's consumer: where it is in the run's events, and what it holds unacked."""

    index: int
    mpid: str
    channel: Any = None
    next_event: int = 0
    unacked: int = 0
    last_tag: int = 0


def consume(url: str, topology: str, queues: list[str], seats: list[Seat], ids: list[str], targets: list[str],
            prefetch: int, counts: Any, received: Any, ready: Any, errors: Any, stop: Any) -> None:
    """A consumer process: one connection, a channel per participant. Each channel checks its events by message id
    (every one it is owed, once, in publish order) and adds them to the shared `counts`; `received` counts every
    delivery of the process, wanted or not."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the parent stops us through `stop`
    total = len(ids)
    by_id = {event_id: n for n, event_id in enumerate(ids)}
    handed = 0
    problems = 0

    def problem(text: str) -> None:
        nonlocal problems
        problems += 1
        if problems <= 5:
            errors.put(text)

    def on_message(channel: Any, method: Any, properties: Any, body: bytes, seat: Seat) -> None:
        nonlocal handed
        handed += 1
        seat.unacked += 1
        seat.last_tag = method.delivery_tag
        n = by_id.get(properties.message_id, -1)
        if n >= 0 and (targets[n] == "broadcast" or targets[n] == seat.mpid):
            due = seat.next_event
            while due < total and targets[due] != "broadcast" and targets[due] != seat.mpid:
                due += 1
            if n != due:
                problem(f"{seat.mpid} got event {n} where event {due} was due (lost, duplicated or out of order)")
            seat.next_event = n + 1
            counts[seat.index] += 1
        elif topology != "stream" or n < 0:  # a queue gets only what its bindings route to it
            problem(f"{seat.mpid} got {method.routing_key} (message id {properties.message_id}), not meant for it")
        if seat.unacked >= prefetch // 2:
            channel.basic_ack(seat.last_tag, multiple=True)
            seat.unacked = 0

    try:
        connection = pika.BlockingConnection(parameters(url))
        for seat in seats:
            seat.channel = connection.channel()
            seat.channel.basic_qos(prefetch_count=prefetch)
            arguments = {"x-stream-offset": "first"} if topology == "stream" else None
            seat.channel.basic_consume(queues[seat.index], lambda c, m, p, b, seat=seat: on_message(c, m, p, b, seat),
                                       arguments=arguments)
        with ready.get_lock():
            ready.value += 1
        while not stop.is_set():
            connection.process_data_events(time_limit=0.05)
            received.value = handed
            for seat in seats:  # a quiet moment: ack what each channel holds, so the broker sends the rest
                if seat.unacked:
                    seat.channel.basic_ack(seat.last_tag, multiple=True)
                    seat.unacked = 0
        received.value = handed
        connection.close()
    except Exception as error:  # noqa: BLE001 - reported to the parent as one line
        errors.put(f"consumer process: {type(error).__name__}: {error}")


# ------------------------------------------------------------------------------------------------ one run


class Bench:
    """The bench's vhost, publisher and shared figures; `run` measures one topology at one participant count."""

    def __init__(self, args: argparse.Namespace) -> None:
        self.args = args
        self.vhost = f"dtn-bench-fanout-{uuid.uuid4().hex[:8]}"
        self.url = vhost_url(self.vhost)
        self.created = False
        self.publisher: RabbitPublisher | None = None
        self.events = templates()
        self.signer = Signer.generate(participant=SENDER)
        self.beam = 0
        self.node_baseline = 0

    def __enter__(self) -> Self:
        try:
            self._create()
        except BaseException:  # a failure or a signal while creating: delete what was made
            self.__exit__()
            raise
        return self

    def _create(self) -> None:
        """The vhost with guest's permissions, the exchanges and the node's baseline memory."""
        self.created = True  # set first: a signal during add_vhost may come after the broker made it
        rabbitmqctl("add_vhost", self.vhost)
        user = urllib.parse.urlsplit(URL).username or "guest"
        rabbitmqctl("set_permissions", "-p", self.vhost, urllib.parse.unquote(user), ".*", ".*", ".*")
        self.beam = beam_pid()
        self.publisher = RabbitPublisher(
            [self.url], client_name="dtn-bench-fanout-publisher",
            topology=Topology(exchange=EXCHANGE, store_queue=None, dead_letter_queue=None, outbound_queue=None,
                              outbound_rejected_queue=None))
        self.publisher.connect()  # declares the exchanges
        self.node_baseline = broker_memory(self.vhost)["node"]

    def __exit__(self, *exc: object) -> None:
        """Delete the vhost with all in it; a second Ctrl-C or SIGTERM does not interrupt that."""
        handlers = {sig: signal.signal(sig, signal.SIG_IGN) for sig in (signal.SIGINT, signal.SIGTERM)}
        try:
            self._delete()
        finally:
            for sig, handler in handlers.items():
                signal.signal(sig, handler)

    def _delete(self) -> None:
        if self.publisher is not None:
            with contextlib.suppress(Exception):  # the vhost's deletion closes it anyway
                self.publisher.close()
        if self.created:
            self.created = False
            if self.vhost in rabbitmqctl("list_vhosts", "name").split():
                rabbitmqctl("delete_vhost", self.vhost)  # everything in it: queues, streams, exchanges, connections

    def declare(self, topology: str, participants: list[str]) -> list[str]:
        """The run's queues (a queue per participant, or one stream), bound; their names in participant order."""
        connection = pika.BlockingConnection(parameters(self.url))
        channel = connection.channel()
        try:
            if topology == "stream":
                name = f"fanout.stream.{uuid.uuid4().hex[:6]}"
                channel.queue_declare(name, durable=True, arguments={"x-queue-type": "stream"})
                channel.queue_bind(name, EXCHANGE, "inbound.#")
                return [name] * len(participants)
            names = []
            for mpid in participants:
                name = f"fanout.{mpid}"
                channel.queue_declare(name, durable=True, arguments={"x-queue-type": topology})
                channel.queue_bind(name, EXCHANGE, f"inbound.*.*.{mpid}")
                for flow in BROADCAST_FLOWS:
                    channel.queue_bind(name, EXCHANGE, f"inbound.{flow}.*.broadcast")
                names.append(name)
            return names
        finally:
            connection.close()

    def delete(self, queues: list[str]) -> None:
        connection = pika.BlockingConnection(parameters(self.url))
        channel = connection.channel()
        for name in dict.fromkeys(queues):
            channel.queue_delete(name)
        connection.close()

    def run(self, topology: str, count: int) -> Run:
        args = self.args
        participants = mpids(count)
        ids, targets = plan(events_for(count, args.events, args.min_deliveries), participants, args.addressed)
        outgoing = messages(ids, targets, self.events, self.signer)
        broadcast = targets.count("broadcast")
        deliveries = broadcast * count + (len(ids) - broadcast)
        queues = self.declare(topology, participants)
        context = multiprocessing.get_context("fork")
        counts = context.Array("q", count, lock=False)
        processes_n = max(1, min(args.consumer_processes, count))
        received = [context.Value("q", 0, lock=False) for _ in range(processes_n)]
        ready = context.Value("i", 0)
        errors = context.Queue()
        stop = context.Event()
        seats = [Seat(n, mpid) for n, mpid in enumerate(participants)]
        processes = [context.Process(target=consume, daemon=True,
                                     args=(self.url, topology, queues, seats[k::processes_n], ids, targets,
                                           args.prefetch, counts, received[k], ready, errors, stop))
                     for k in range(processes_n)]
        try:
            for process in processes:
                process.start()
            wait_for(lambda: ready.value == processes_n, 300, "the consumers did not attach", processes, errors)
            idle = broker_memory(self.vhost)
            idle["node"] -= self.node_baseline
            pids = [process.pid or 0 for process in processes]
            background = cpu_seconds(self.beam)
            time.sleep(BACKGROUND_SECONDS)  # what the shared node spends with this run idle: the others' work
            background = (cpu_seconds(self.beam) - background) / BACKGROUND_SECONDS
            broker_cpu, client_cpu = cpu_seconds(self.beam), sum(cpu_seconds(pid) for pid in pids)
            rss_before = rss_bytes(self.beam)
            peak = RssPeak(self.beam)
            start = time.perf_counter()
            assert self.publisher is not None
            self.publisher.publish_all(outgoing, timeout=args.timeout)
            confirmed = time.perf_counter()
            wait_for(lambda: sum(counts) >= deliveries, args.timeout,
                     lambda: f"{sum(counts):,} of {deliveries:,} deliveries", processes, errors)
            done = time.perf_counter()
            broker_cpu = max(0.0, cpu_seconds(self.beam) - broker_cpu - background * (done - start))
            client_cpu = sum(cpu_seconds(pid) for pid in pids) - client_cpu
            growth = max(0, peak.stop() - rss_before)
        finally:
            stop.set()
            for process in processes:
                process.join(30)
                if process.is_alive():
                    process.terminate()
            with contextlib.suppress(pika.exceptions.AMQPError):  # else deleting the vhost deletes them
                self.delete(queues)
        failures = drain(errors)
        if failures or sum(counts) != deliveries:
            said = failures or [f"{sum(counts):,} of {deliveries:,} deliveries"]
            raise SystemExit("bench_fanout: " + "; ".join(said))
        handed = sum(value.value for value in received)
        return Run(topology, count, len(ids), deliveries, handed or deliveries, confirmed - start, done - start,
                   done - confirmed, broker_cpu, client_cpu, idle, growth)


def wait_for(condition: Callable[[], bool], timeout: float, what: str | Callable[[], str],
             processes: list[Any], errors: Any) -> None:
    """Poll `condition` every 5 ms; a consumer's error, a dead consumer or the timeout ends the bench."""
    deadline = time.monotonic() + timeout
    while not condition():
        if not errors.empty():
            raise SystemExit("bench_fanout: " + "; ".join(drain(errors)))
        if any(not process.is_alive() for process in processes):
            raise SystemExit("bench_fanout: a consumer process exited: " + "; ".join(drain(errors)))
        if time.monotonic() > deadline:
            raise SystemExit(f"bench_fanout: not within {timeout:g} s: {what() if callable(what) else what}")
        time.sleep(0.005)


def drain(errors: Any) -> list[str]:
    """What the consumer processes reported (a message put just before may take a moment through the pipe)."""
    out = []
    while True:
        try:
            out.append(errors.get(timeout=0.1))
        except queue.Empty:
            return out


# ------------------------------------------------------------------------------------------------ main


def mib(value: float) -> str:
    return f"{value / 1048576:,.1f} MiB"


def describe(run: Run) -> str:
    idle = run.idle_memory
    return (f"{run.topology:8s} {run.participants:4d} participants x {run.events:,} events: "
            f"publish {run.publish_rate:8,.0f} ev/s | "
            f"all delivered in {run.total_seconds:6.2f} s (drain {run.drain_seconds:5.2f} s) | "
            f"{run.events_to_all_rate:8,.1f} ev/s to all, {run.delivery_rate:8,.0f} deliveries/s"
            f"{f' ({run.received:,} handed out)' if run.received != run.deliveries else ''} | "
            f"broker CPU {per_delivery_us(run.broker_cpu_seconds, run):5.1f} us/delivery, "
            f"consumers {per_delivery_us(run.client_cpu_seconds, run):5.1f} us | "
            f"idle: queues {mib(idle['queues'])}, channels {mib(idle['channels'])}, "
            f"connections {mib(idle['connections'])}, node +{mib(idle['node'])} | "
            f"peak RSS +{mib(run.peak_rss_growth)} | load {os.getloadavg()[0]:.1f}")


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("--quick", action="store_true", help="1, 10, 50 participants x 100 events")
    parser.add_argument("--participants", help="comma-separated participant counts (default 1,50,200,500)")
    parser.add_argument("--events", type=int, help="events per run (default 200, quick 100)")
    parser.add_argument("--min-deliveries", type=int, help="more events when fewer participants would get fewer "
                        "deliveries than this in all (default 6000, quick 2000)")
    parser.add_argument("--topologies", default="classic,stream",
                        help="comma-separated, of classic, quorum, stream (default classic,stream; quorum "
                        "declares a Raft group per participant: heavy on a shared node)")
    parser.add_argument("--addressed", type=float, default=0.0, help="share of events addressed to one participant")
    parser.add_argument("--prefetch", type=int, default=200, help="per consumer channel")
    parser.add_argument("--consumer-processes", type=int, default=2, help="each with one connection")
    parser.add_argument("--timeout", type=float, default=600.0, help="seconds a run may take")
    args = parser.parse_args(argv)
    try:
        counts = [int(part) for part in (args.participants or ("1,10,50" if args.quick else "1,50,200,500")).split(",")]
    except ValueError:
        parser.error("--participants: comma-separated whole numbers, e.g. 1,50,200,500")
    if not counts or min(counts) < 1 or max(counts) > 2000:
        parser.error("--participants: each between 1 and 2000")
    args.participants = counts
    args.events = args.events or (100 if args.quick else 200)
    args.min_deliveries = args.min_deliveries or (2000 if args.quick else 6000)
    args.topologies = [part.strip() for part in args.topologies.split(",") if part.strip()]
    if unknown := [t for t in args.topologies if t not in TOPOLOGIES]:
        parser.error(f"--topologies: unknown {', '.join(unknown)} (known: {', '.join(TOPOLOGIES)})")
    if not 0 <= args.addressed < 1:
        parser.error("--addressed: a share from 0 to below 1")
    if args.events < 1 or args.prefetch < 2 or args.consumer_processes < 1:
        parser.error("--events >= 1, --prefetch >= 2, --consumer-processes >= 1")
    return args


def _stop(signum: int, frame: FrameType | None) -> None:
    raise SystemExit(f"bench_fanout: stopped by signal {signum}")


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    signal.signal(signal.SIGTERM, _stop)
    load = os.getloadavg()[0]
    print(f"fan-out: {args.events:,} events per run (at least {args.min_deliveries:,} deliveries; "
          f"{args.addressed:.0%} addressed), participants "
          f"{args.participants}, prefetch {args.prefetch}, {args.consumer_processes} consumer process(es); "
          f"{os.cpu_count()} cores, load average {load:.2f} at start (shared: expect noise)")
    runs: list[Run] = []
    try:
        with Bench(args) as bench:
            sizes = [len(message.body) for message in messages(*plan(200, ["P000"], args.addressed), bench.events,
                                                                 bench.signer)]
            print(f"vhost {bench.vhost}; signed event bodies {min(sizes)}-{max(sizes)} bytes, "
                  f"mean {sum(sizes) / len(sizes):,.0f}")
            for topology in args.topologies:
                for count in args.participants:
                    run = bench.run(topology, count)
                    runs.append(run)
                    print(describe(run), flush=True)
    except KeyboardInterrupt:
        raise SystemExit("bench_fanout: interrupted (its vhost was deleted)") from None
    except (pika.exceptions.AMQPError, BrokerError) as error:
        said = f"{type(error).__name__}: {error}"
        raise SystemExit(f"bench_fanout: the broker failed: {said} (its vhost was deleted)") from None
    print()
    for line in report(runs):
        print(line)
    print(f"load average at the end {os.getloadavg()[0]:.2f}")


if __name__ == "__main__":
    main()
