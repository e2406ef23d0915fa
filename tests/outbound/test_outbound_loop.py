"""The outbound loop. Its own logic (rejects, de-duplication, the prefetch window, reload, batching by size and by
time) runs on the in-memory broker ports of tests/fakes.py with a hand-driven clock; what proves the real paths runs on
the real RabbitMQ: the round trip of every example and sample, a connection dropped mid-batch, a check worker killed
mid-stream (and tests/outbound/test_outbound_hostile.py, the dead-lettering of hostile events)."""

from __future__ import annotations

import os
import signal
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson
import pytest

from bridge.adapters.ledger import Ledger
from bridge.adapters.processes import ChildProcess
from bridge.adapters.rabbitmq import RabbitConsumer, RabbitPublisher
from bridge.adapters.rabbitmq.topology import Topology
from bridge.adapters.spool import FolderOutbox
from bridge.config import OutboundConfig
from bridge.dtn.definitions import DefinitionSet
from bridge.dtn.reader import FlowFileReader
from bridge.inbound.flowfile import check_file
from bridge.outbound import CheckStage, InlineChecks, MessageChecker, OutboundLoop, OutboundWriter
from bridge.outbound.workers import CheckWorkers
from bridge.ports import Backoff
from bridge.rules import parse_rules
from bridge.service import check_values
from bridge.signing import Signer, TrustStore
from tests.conftest import EXAMPLES, Admin, samples
from tests.fakes import FakeConsumer, FakePublisher
from tests.helpers import close_connections, wait_until
from tests.outbound.outbound_helpers import (
    VALID_SAMPLES,
    FakeClock,
    check_config,
    key,
    message,
    meter_ids,
    new_event,
    numbered_events,
    running,
    source_file,
    visible_files,
)


def make_loop(amqp_url: str, topology: Topology, client_name: str, definitions: DefinitionSet,
              trust: TrustStore | None, ledger: Ledger, config: OutboundConfig,
              clock: FakeClock, checks: CheckStage | None = None, **options: Any) -> OutboundLoop:
    """A loop checking in its own thread with `trust` (none without), unless `checks` says otherwise."""
    assert topology.outbound_queue is not None
    consumer = RabbitConsumer([amqp_url], queue=topology.outbound_queue, prefetch=config.prefetch,
                              topology=topology, client_name=client_name)
    writer = OutboundWriter(definitions, ledger, config, outbox=FolderOutbox(config.folder, config.file_mode),
                            clock=clock)
    if checks is None and trust is not None:
        checks = InlineChecks(MessageChecker(definitions, trust))
    return OutboundLoop(consumer, writer, checks, poll_seconds=0.1, **options)


@pytest.fixture
def loop(amqp_url: str, topology: Topology, client_name: str, definitions: DefinitionSet, trust: TrustStore,
         ledger: Ledger, config: OutboundConfig, clock: FakeClock, admin: Admin) -> OutboundLoop:
    return make_loop(amqp_url, topology, client_name, definitions, trust, ledger, config, clock)


class Ticker:
    """The loop's monotonic clock, moved by hand: batch_seconds pass when the test says so."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@dataclass
class FakeRig:
    """A loop on the fake broker ports: what is published to `publisher` is queued for the loop's `consumer`."""

    loop: OutboundLoop
    consumer: FakeConsumer
    publisher: FakePublisher
    ticker: Ticker

    def settled(self) -> bool:
        """Nothing waits in the queue and nothing delivered is unsettled."""
        return self.consumer.ready == 0 and self.consumer.unacked == 0

    def rejected(self, count: int) -> dict[str | None, tuple[str, str]]:
        """message id -> (code, reason) of the first `count` dead-lettered messages, once there are as many."""
        wait_until(lambda: len(self.consumer.dead_letters) >= count, 10, lambda: self.consumer.dead_letters)
        return {letter.message_id: (letter.code, letter.reason) for letter in self.consumer.dead_letters[:count]}


def fake_rig(definitions: DefinitionSet, trust: TrustStore | None, ledger: Ledger, config: OutboundConfig,
             clock: FakeClock, checks: CheckStage | None = None, **options: Any) -> FakeRig:
    """A loop checking in its own thread with `trust` (none without), unless `checks` says otherwise."""
    consumer = FakeConsumer(prefetch=config.prefetch)
    ticker = Ticker()
    if checks is None and trust is not None:
        checks = InlineChecks(MessageChecker(definitions, trust))
    writer = OutboundWriter(definitions, ledger, config, outbox=FolderOutbox(config.folder, config.file_mode),
                            clock=clock)
    loop = OutboundLoop(consumer, writer, checks, poll_seconds=0.05, monotonic=ticker, **options)
    return FakeRig(loop, consumer, FakePublisher(route=consumer.offer), ticker)


@pytest.fixture
def rig(definitions: DefinitionSet, trust: TrustStore, ledger: Ledger, config: OutboundConfig,
        clock: FakeClock) -> FakeRig:
    return fake_rig(definitions, trust, ledger, config, clock)


class TestRoundTrip:
    def test_every_example_and_sample_comes_back_byte_for_byte(
        self, loop: OutboundLoop, publisher: RabbitPublisher, reader: FlowFileReader, signer: Signer,
        ledger: Ledger, out_dir: Path
    ) -> None:
        """DTN -> events (+ manifest) -> RabbitMQ -> the loop -> the same bytes, and every manifest matches."""
        sources = [source_file(p, reader) for p in sorted(EXAMPLES.glob("*.txt"))]
        sources += [source_file(path, reader) for path in samples(VALID_SAMPLES)]
        # manifests first for half of them, last for the other half: both orders are checked
        for number, source in enumerate(sources):
            events = [message(e, signer) for e in source.events]
            manifest = message(source.manifest, signer)
            publisher.publish_all([manifest, *events] if number % 2 else [*events, manifest])
        with running(loop):
            wait_until(lambda: len(visible_files(out_dir)) == len(sources), 30)
            wait_until(lambda: all(r.manifest_match is not None for r in ledger.outbound_files()), 10)
        written = {p.read_bytes(): p for p in visible_files(out_dir)}
        for source in sources:
            assert source.path.read_bytes() in written, f"{source.path.name} was not reproduced"
        records = ledger.outbound_files()
        assert [r.kind for r in records] == ["original"] * len(sources)
        assert all(r.manifest_match for r in records)
        assert all(p.stat().st_mode & 0o777 == 0o640 for p in visible_files(out_dir))
        assert not [p for p in out_dir.iterdir() if p.name.startswith(".")]


def d0010_template(reader: FlowFileReader) -> dict[str, Any]:
    return source_file(EXAMPLES / "D0010002.txt", reader).events[0]


class TestRejects:
    def test_bad_events_are_dead_lettered_with_reason_and_never_written(
        self, rig: FakeRig, reader: FlowFileReader, signer: Signer, ledger: Ledger
    ) -> None:
        """Tampered, unsigned, unknown-key, schema-invalid, unknown-flow and non-JSON messages are dead-lettered with
        their code; the good event behind them is still written."""
        template = d0010_template(reader)
        good, tampered, unsigned, stranger, bad_schema, bad_flow, not_json = (
            new_event(template, n) for n in range(7))
        tampered_body = signer.sign(tampered)
        tampered_body["dtcto"] = "EVIL"
        bad_schema["data"] = {"mpan_cores": {"mpan_core": "not a number"}}
        bad_flow["type"] = "uk.dtc.X9999.v001"
        messages = [
            message(tampered, body=orjson.dumps(tampered_body)),
            message(unsigned),
            message(stranger, Signer.generate()),
            message(bad_schema, signer),
            message(bad_flow, signer),
            message(not_json, body=b"{not json"),
            message(good, signer),
        ]
        rig.publisher.publish_all(messages)
        with running(rig.loop):
            reasons = rig.rejected(6)
            wait_until(lambda: rig.loop.batcher.held == 1)
            rig.ticker.now += 30.0  # batch_seconds: the good event's batch is due
            wait_until(lambda: ledger.seen_event(key(good)))
            wait_until(rig.settled)
        assert {key: code for key, (code, _) in reasons.items()} == {
            tampered["id"]: "bad_signature",
            unsigned["id"]: "missing_signature",
            stranger["id"]: "unknown_key",
            bad_schema["id"]: "schema_invalid",
            bad_flow["id"]: "unknown_flow",
            not_json["id"]: "not_json",
        }
        assert "mpan_core" in reasons[bad_schema["id"]][1]
        assert ledger.seen_events((good["source"], m.message_id) for m in messages) == {key(good)}

    def test_without_trust_nothing_is_consumed(
        self, definitions: DefinitionSet, ledger: Ledger, config: OutboundConfig, clock: FakeClock,
        reader: FlowFileReader, signer: Signer, out_dir: Path
    ) -> None:
        """No signing.trust: nothing can be verified, so the events wait in the queue (nothing lost)."""
        rig = fake_rig(definitions, None, ledger, config, clock)
        rig.publisher.publish_all([message(new_event(d0010_template(reader), 1), signer)])
        with running(rig.loop):
            pass
        assert (rig.consumer.connections, rig.consumer.ready) == (0, 1) and not visible_files(out_dir)


class TestExactlyOnce:
    def test_republished_events_are_acked_not_rewritten(
        self, rig: FakeRig, reader: FlowFileReader, signer: Signer, out_dir: Path
    ) -> None:
        """The same events again (a redelivery after a crash, or a publisher retry): no second copy."""
        source = source_file(EXAMPLES / "D0030001.txt", reader)
        rig.publisher.publish_all([message(e, signer) for e in source.events])
        with running(rig.loop):
            wait_until(lambda: len(visible_files(out_dir)) == 1)
            rig.publisher.publish_all([message(e, signer) for e in source.events] * 2)
            wait_until(lambda: len(rig.consumer.acked) == 3 * len(source.events))
        assert rig.settled() and rig.loop.batcher.held == 0
        assert [p.read_bytes() for p in visible_files(out_dir)] == [source.path.read_bytes()]

    def test_duplicates_take_no_place_in_the_prefetch_window(
        self, definitions: DefinitionSet, trust: TrustStore, ledger: Ledger, out_dir: Path, clock: FakeClock,
        reader: FlowFileReader, signer: Signer
    ) -> None:
        """Every event of a source file twice in a row (a publisher's file retry): the file still fits a window
        just its size, so it is reproduced whole rather than given up to a batch when the window fills."""
        source = source_file(EXAMPLES / "D0030001.txt", reader)
        count = len(source.events)
        assert count == 8
        config = OutboundConfig(folder=out_dir, batch_size=1000, batch_seconds=30.0, prefetch=count + 1)
        rig = fake_rig(definitions, trust, ledger, config, clock)
        rig.publisher.publish_all([message(e, signer) for e in source.events for _copy in (1, 2)])
        with running(rig.loop):
            wait_until(lambda: len(visible_files(out_dir)) == 1, 10)
            wait_until(rig.settled)
        assert [p.read_bytes() for p in visible_files(out_dir)] == [source.path.read_bytes()]

    def test_copies_checked_with_the_set_they_repeat_are_acked(
        self, definitions: DefinitionSet, ledger: Ledger, out_dir: Path, clock: FakeClock, reader: FlowFileReader,
        signer: Signer, tmp_path: Path
    ) -> None:
        """A source file's events, then copies of its first three (a file retry cut short): a check worker answers
        them all at once, and the copies come after the answer that completed the file. They are duplicates of a
        file just written, so they are acked at once, not gathered as a new set that holds its place in the
        prefetch window until batch_seconds give it up."""
        source = source_file(EXAMPLES / "D0030001.txt", reader)
        config = OutboundConfig(folder=out_dir, batch_size=1000, batch_seconds=60.0, prefetch=100)
        checks = CheckWorkers(check_values(check_config(tmp_path, signer)), 1, spawn=ChildProcess)
        checks.start()
        rig = fake_rig(definitions, None, ledger, config, clock, checks)
        bodies = [message(e, signer) for e in source.events]
        rig.publisher.publish_all(bodies + bodies[:3])
        with running(rig.loop):
            wait_until(lambda: len(visible_files(out_dir)) == 1, 10)
            wait_until(rig.settled)
            wait_until(lambda: rig.loop.batcher.held == 0, 10, lambda: f"{rig.loop.batcher.held} copies held")
        assert [p.read_bytes() for p in visible_files(out_dir)] == [source.path.read_bytes()]

    def test_reconnect_mid_batch_gives_no_duplicate(
        self, amqp_url: str, topology: Topology, client_name: str, definitions: DefinitionSet, trust: TrustStore,
        ledger: Ledger, out_dir: Path, clock: FakeClock, publisher: RabbitPublisher, reader: FlowFileReader,
        signer: Signer, admin: Admin
    ) -> None:
        """The connection drops while a batch is open: the held deliveries come back and are written once."""
        config = OutboundConfig(folder=out_dir, batch_size=1000, batch_seconds=2.0, prefetch=500)
        loop = make_loop(amqp_url, topology, client_name, definitions, trust, ledger, config, clock)
        events = numbered_events(d0010_template(reader), 20)
        publisher.publish_all([message(e, signer) for e in events])
        with running(loop):
            wait_until(lambda: loop.batcher.held == 20, 10)
            assert close_connections(client_name) == 1
            wait_until(lambda: len(visible_files(out_dir)) == 1, 20)
            wait_until(lambda: admin.message_count(topology.outbound_queue or "") == 0)
        [written] = visible_files(out_dir)
        assert sorted(meter_ids(written, reader)) == [f"M{n:07d}" for n in range(20)]


class TestCheckWorkers:
    def test_a_check_worker_killed_mid_stream(
        self, amqp_url: str, topology: Topology, client_name: str, definitions: DefinitionSet, ledger: Ledger,
        out_dir: Path, clock: FakeClock, publisher: RabbitPublisher, reader: FlowFileReader, signer: Signer,
        admin: Admin, tmp_path: Path
    ) -> None:
        """The daemon's default stage: two check worker processes. One is killed while events stream: the loop
        gives its deliveries back to the broker, a new worker checks them again, and every event is written once."""
        config = OutboundConfig(folder=out_dir, batch_size=1000, batch_seconds=1.0, prefetch=2000)
        checks = CheckWorkers(check_values(check_config(tmp_path, signer)), 2, spawn=ChildProcess)
        checks.start()
        interruptions: list[str | None] = []
        loop = make_loop(amqp_url, topology, client_name, definitions, None, ledger, config, clock, checks,
                         backoff=Backoff(initial=0.1, maximum=0.2), on_interrupted=interruptions.append)
        events = numbered_events(d0010_template(reader), 4000)
        publisher.publish_all([message(e, signer) for e in events])
        with running(loop):
            wait_until(lambda: checks.pending > 0, 20, interval=0.001)
            victim = checks._children[1].pid
            assert victim is not None
            os.kill(victim, signal.SIGKILL)
            wait_until(lambda: len(ledger.seen_events(key(e) for e in events)) == len(events), 60)
            wait_until(lambda: admin.message_count(topology.outbound_queue or "") == 0)
        assert any(error is not None and "WorkerError" in error for error in interruptions), interruptions
        written = sorted(meter_id for path in visible_files(out_dir) for meter_id in meter_ids(path, reader))
        assert written == [f"M{n:07d}" for n in range(len(events))]  # each once


class TestReload:
    def test_a_delivery_taken_after_a_reload_is_judged_by_its_rules(
        self, rig: FakeRig, reader: FlowFileReader, signer: Signer, definitions: DefinitionSet, trust: TrustStore,
        ledger: Ledger
    ) -> None:
        """New checks handed over while the loop waits for a delivery (a SIGHUP on an idle queue): the delivery
        that ends the wait came after the reload, so the new rules judge it, not the stage they replace."""
        event = new_event(d0010_template(reader), 1)
        deny = parse_rules({"participants": {"outbound": {"deny": [event["dtcto"]]}}}, participant_id="DTNB",
                           participant_role="X", definitions=definitions)
        rig.loop.poll_seconds = 3.0  # long enough to be waiting in `get` when the new checks come
        with running(rig.loop):
            wait_until(lambda: rig.consumer.connections == 1)  # in `get`, on an empty queue
            rig.loop.replace_checks(InlineChecks(MessageChecker(definitions, trust, deny)))
            rig.publisher.publish_all([message(event, signer)])
            reasons = rig.rejected(1)
        assert {key: code for key, (code, _) in reasons.items()} == {event["id"]: "participant.denied"}
        assert not ledger.seen_event(key(event))


class TestBatching:
    def test_by_size_then_by_time(
        self, definitions: DefinitionSet, trust: TrustStore, ledger: Ledger, out_dir: Path, clock: FakeClock,
        reader: FlowFileReader, signer: Signer
    ) -> None:
        """12 events, batch_size 5: two full files at once, the last 2 once batch_seconds pass; numbered 1, 2, 3."""
        config = OutboundConfig(folder=out_dir, batch_size=5, batch_seconds=1.5, prefetch=100)
        rig = fake_rig(definitions, trust, ledger, config, clock)
        events = numbered_events(d0010_template(reader), 12)
        rig.publisher.publish_all([message(e, signer) for e in events])
        with running(rig.loop):
            wait_until(lambda: len(visible_files(out_dir)) == 2 and rig.loop.batcher.held == 2, 10)
            assert len(visible_files(out_dir)) == 2 and rig.consumer.unacked == 2  # the rest waits for its time
            rig.ticker.now += 1.5
            wait_until(lambda: len(visible_files(out_dir)) == 3, 10)
        names = [p.name for p in visible_files(out_dir)]
        assert names == [f"D0010002_SYNA_{n:010d}.usr" for n in (1, 2, 3)]
        counts = [len(meter_ids(out_dir / name, reader)) for name in names]
        assert counts == [5, 5, 2]
        lines = (out_dir / names[0]).read_text().splitlines()
        # 2024-07-01 11:30:05 UTC is 12:30:05 BST
        assert lines[0] == "ZHV|0000000001|D0010002|X|SYNA|X|SYNB|20240701123005||||OPER|"
        assert lines[-1].startswith("ZPT|0000000001|") and lines[-1].endswith("|5|20240701123005|")

    def test_one_file_per_recipient_and_test_flag(
        self, rig: FakeRig, reader: FlowFileReader, signer: Signer, out_dir: Path, ledger: Ledger
    ) -> None:
        """Different recipients or test data flags never share a file."""
        template = d0010_template(reader)
        events = (numbered_events(template, 2) + numbered_events(template, 2, start=2, to="SYNC")
                  + numbered_events(template, 2, start=4, test_flag="TR01"))
        rig.publisher.publish_all([message(e, signer) for e in events])
        with running(rig.loop):
            wait_until(lambda: rig.loop.batcher.held == 6)
            rig.ticker.now += 30.0  # batch_seconds
            wait_until(lambda: len(visible_files(out_dir)) == 3, 10)
        files = {(r.to_participant, r.test_flag, r.events) for r in ledger.outbound_files()}
        assert files == {("SYNB", "OPER", 2), ("SYNC", "OPER", 2), ("SYNB", "TR01", 2)}

    def test_incomplete_source_file_is_batched_after_batch_seconds(
        self, rig: FakeRig, reader: FlowFileReader, signer: Signer, out_dir: Path, ledger: Ledger
    ) -> None:
        """1 of the 2 events of a file: after batch_seconds it goes into a new file with a new identifier."""
        source = source_file(EXAMPLES / "D0010002.txt", reader)
        rig.publisher.publish_all([message(source.events[1], signer)])
        with running(rig.loop):
            wait_until(lambda: rig.loop.batcher.held == 1)
            rig.ticker.now += 30.0  # batch_seconds
            wait_until(lambda: len(visible_files(out_dir)) == 1, 10)
        [record] = ledger.outbound_files()
        assert (record.kind, record.events, record.file_identifier) == ("batch", 1, "0000000001")
        checked = check_file(record.path, reader)
        assert checked.ok and checked.flow_count == 1
