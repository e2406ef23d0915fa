"""The Batcher alone: which events make which file, and when (no broker, no files, time passed in)."""

from __future__ import annotations

from typing import Any

from bridge.dtn.model import FileHeader
from bridge.outbound import Batcher, BatchKey, CheckedEvent, Origin
from bridge.ports import Delivery

KEY = BatchKey("D0010002", "SYNA", "D", "SYNB", "X", "OPER")


def delivery(tag: int) -> Delivery:
    return Delivery(body=b"", headers={}, message_id=str(tag), routing_key="outbound.x", redelivered=False,
                    delivery_tag=tag)


HEADER = FileHeader("ZHV", "0000000001", "D0010002", "D", "SYNA", "X", "SYNB", "20240701123005")


def event(event_id: str, key: BatchKey | None = KEY, origin: tuple[str, int, int] | None = None) -> CheckedEvent:
    placed = Origin(*origin, header=HEADER, completed="20240701123005", dtn_checksum="", attributes=()) \
        if origin else None
    return CheckedEvent(event_id, "urn:mpid:SYNA", "D0010002", ("026|1200023305967|V",), key, placed)


def ids(ready: Any) -> list[str]:
    return [held.event.id for held in ready.items]


class TestBatches:
    def test_closed_at_batch_size(self) -> None:
        batcher = Batcher(batch_size=3, batch_seconds=10, capacity=100)
        assert batcher.add(event("a"), delivery(1), 0) == []
        assert batcher.add(event("b"), delivery(2), 0) == []
        [ready] = batcher.add(event("c"), delivery(3), 0)
        assert (ready.kind, ready.reason, ids(ready)) == ("batch", "size", ["a", "b", "c"])
        assert batcher.held == 0 and batcher.next_deadline() is None

    def test_closed_when_the_oldest_has_waited(self) -> None:
        batcher = Batcher(batch_size=100, batch_seconds=10, capacity=100)
        batcher.add(event("a"), delivery(1), 0)
        batcher.add(event("b"), delivery(2), 5)
        assert batcher.next_deadline() == 10 and batcher.due(9.9) == []
        [ready] = batcher.due(10)
        assert (ready.reason, ids(ready)) == ("time", ["a", "b"])

    def test_keys_do_not_mix(self) -> None:
        batcher = Batcher(batch_size=2, batch_seconds=10, capacity=100)
        other = BatchKey("D0010002", "SYNA", "D", "SYNB", "X", "TR01")
        assert batcher.add(event("a"), delivery(1), 0) == []
        assert batcher.add(event("b", other), delivery(2), 0) == []
        assert len(batcher.due(10)) == 2

    def test_a_full_window_closes_the_largest_batch(self) -> None:
        batcher = Batcher(batch_size=100, batch_seconds=10, capacity=3)
        other = BatchKey("D0010002", "SYNA", "D", "SYNC", "X", "OPER")
        batcher.add(event("a"), delivery(1), 0)
        batcher.add(event("b"), delivery(2), 0)
        batcher.add(event("c", other), delivery(3), 0)
        [ready] = batcher.relieve()
        assert (ready.reason, ids(ready), batcher.held) == ("capacity", ["a", "b"], 1)

class TestOriginals:
    def test_complete_set_in_dtcindex_order(self) -> None:
        batcher = Batcher(batch_size=2, batch_seconds=10, capacity=100)
        assert batcher.add(event("x3", origin=("F", 3, 3)), delivery(1), 0) == []
        assert batcher.add(event("x1", origin=("F", 1, 3)), delivery(2), 0) == []
        [ready] = batcher.add(event("x2", origin=("F", 2, 3)), delivery(3), 0)
        assert (ready.kind, ready.reason, ids(ready)) == ("original", "complete", ["x1", "x2", "x3"])

    def test_incomplete_set_is_diverted_to_batches_after_batch_seconds(self) -> None:
        batcher = Batcher(batch_size=100, batch_seconds=10, capacity=100)
        batcher.add(event("x1", origin=("F", 1, 3)), delivery(1), 0)
        batcher.add(event("x2", origin=("F", 2, 3)), delivery(2), 1)
        [ready] = batcher.due(10)
        assert (ready.kind, ids(ready)) == ("batch", ["x1", "x2"])

    def test_without_test_flag_an_incomplete_set_cannot_be_written(self) -> None:
        batcher = Batcher(batch_size=100, batch_seconds=10, capacity=100)
        batcher.add(event("p1", None, origin=("P", 1, 2)), delivery(1), 0)
        [ready] = batcher.due(10)
        assert (ready.kind, ids(ready), batcher.held) == ("incomplete", ["p1"], 0)

    def test_larger_than_the_window_is_batched_at_once(self) -> None:
        batcher = Batcher(batch_size=1, batch_seconds=10, capacity=2)
        [ready] = batcher.add(event("x1", origin=("F", 1, 3)), delivery(1), 0)
        assert ready.kind == "batch"

    def test_a_second_event_at_the_same_position_is_batched(self) -> None:
        batcher = Batcher(batch_size=100, batch_seconds=10, capacity=100)
        batcher.add(event("x1", origin=("F", 1, 2)), delivery(1), 0)
        batcher.add(event("y1", origin=("F", 1, 2)), delivery(2), 0)
        [ready] = batcher.relieve()
        assert ids(ready) == ["y1"] and batcher.open_originals == 1

    def test_full_window_with_only_sets_diverts_the_oldest(self) -> None:
        batcher = Batcher(batch_size=100, batch_seconds=10, capacity=2)
        batcher.add(event("x1", origin=("F", 1, 2)), delivery(1), 0)
        batcher.add(event("z1", origin=("G", 1, 2)), delivery(2), 1)
        [ready] = batcher.relieve()
        assert (ready.kind, ids(ready), batcher.open_originals) == ("batch", ["x1"], 1)

    def test_clear_forgets_everything(self) -> None:
        batcher = Batcher(batch_size=100, batch_seconds=10, capacity=100)
        batcher.add(event("x1", origin=("F", 1, 2)), delivery(1), 0)
        batcher.add(event("a"), delivery(2), 0)
        batcher.clear()
        assert (batcher.held, batcher.open_originals, batcher.next_deadline()) == (0, 0, None)
        assert batcher.find(("urn:mpid:SYNA", "a")) is None
