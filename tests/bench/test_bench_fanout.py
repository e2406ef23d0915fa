"""The pure parts of bench/bench_fanout.py: the events it publishes (signed, routed, checked by id) and the figures
it prints (ratios against the single consumer, the cost per added participant). The broker runs are the bench's own
business; these keep its arithmetic and its events honest."""

from __future__ import annotations

import importlib.util
import sys
from types import ModuleType

import orjson
import pytest

from bridge.signing import Signer, TrustStore
from tests.conftest import REPO


@pytest.fixture(scope="module")
def bench() -> ModuleType:
    spec = importlib.util.spec_from_file_location("bench_fanout", REPO / "bench" / "bench_fanout.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules["bench_fanout"] = module  # dataclasses look their module up
    spec.loader.exec_module(module)
    return module


def test_slope_is_the_least_squares_cost_per_participant(bench: ModuleType) -> None:
    assert bench.slope([1, 50, 200, 500], [10 + 3 * x for x in (1, 50, 200, 500)]) == pytest.approx(3.0)
    assert bench.slope([1, 2, 3], [1.0, 5.0, 3.0]) == pytest.approx(1.0)
    with pytest.raises(ValueError, match="two points"):
        bench.slope([1], [1.0])
    with pytest.raises(ValueError, match="different"):
        bench.slope([5, 5], [1.0, 2.0])


def test_small_runs_get_enough_events_to_time(bench: ModuleType) -> None:
    assert bench.events_for(1, 300, 6000) == 6000
    assert bench.events_for(7, 300, 6000) == 858  # rounded up: at least 6000 deliveries
    assert bench.events_for(500, 300, 6000) == 300


def test_the_plan_addresses_a_share_of_events_to_one_participant_each_in_turn(bench: ModuleType) -> None:
    ids, targets = bench.plan(8, ["P000", "P001"], 0.25)
    assert len(set(ids)) == 8
    assert targets == ["broadcast", "broadcast", "broadcast", "P000", "broadcast", "broadcast", "broadcast", "P001"]
    assert bench.plan(3, ["P000"], 0.0)[1] == ["broadcast"] * 3
    shares = {share: bench.plan(1000, ["P000", "P001", "P002"], share)[1] for share in (0.1, 0.5, 0.9)}
    assert {share: 1000 - targets.count("broadcast") for share, targets in shares.items()} == {
        0.1: 100, 0.5: 500, 0.9: 900}
    assert shares[0.9].count("P002") == 300


def test_published_events_are_signed_and_routed_as_the_bridge_does(bench: ModuleType) -> None:
    signer = Signer.generate(participant=bench.SENDER)
    ids, targets = bench.plan(6, ["P000", "P001"], 0.5)
    out = bench.messages(ids, targets, bench.templates(), signer)
    assert [m.routing_key for m in out] == [
        "inbound.D0269002.SYNA.broadcast", "inbound.D0010002.SYNA.P000", "inbound.D0270002.SYNA.broadcast",
        "inbound.D0010002.SYNA.P001", "inbound.D0269002.SYNA.broadcast", "inbound.D0010002.SYNA.P000"]
    store = TrustStore.from_jwks(signer.public_jwks())
    for message, event_id in zip(out, ids):
        event = orjson.loads(message.body)
        assert event["id"] == message.message_id == event_id
        store.verify(event)  # raises on a bad signature


def run(bench: ModuleType, topology: str, participants: int, seconds: float, memory: int) -> object:
    events = 100
    deliveries = events * participants
    return bench.Run(topology, participants, events, deliveries, deliveries, publish_seconds=seconds / 2,
                     total_seconds=seconds, drain_seconds=seconds / 2, broker_cpu_seconds=deliveries * 1e-4,
                     client_cpu_seconds=0.0, idle_memory={"queues": memory, "channels": 0, "connections": 0,
                                                           "node": 2 * memory})


def test_the_report_compares_with_the_single_consumer_and_prices_a_participant(bench: ModuleType) -> None:
    runs = [run(bench, "classic", 1, 1.0, 100_000), run(bench, "classic", 101, 50.5, 100_000 + 100 * 65_536),
            run(bench, "stream", 1, 1.0, 0), run(bench, "stream", 11, 2.0, 11 * 1024)]
    lines = bench.report(runs)
    assert lines[0] == "classic: against 1 participant(s) (100 deliveries/s, 100 events/s to all)"
    # 101 x the deliveries in 50.5 x the time: twice the delivery rate, 1/50.5 of the events/s to all; 100 us of
    # broker CPU per delivery is 100 us more per event for each participant added
    assert "101 participants: deliveries/s x2.00, events/s to all x0.020, publish rate x0.02, " \
           "broker CPU per delivery x1.00, idle memory x66.54" in lines[1]
    assert lines[2].startswith("  per added participant: 64.0 KiB broker memory idle (vhost processes; node delta "
                               "128.0 KiB), +4,950.0 us wall and +100.0 us broker CPU per event")
    assert "idle memory xn/a" in lines[4]  # nothing attributed to the single stream consumer: no ratio
