"""The outbound check workers: the same answers as checking in the daemon, in delivery order across processes, and
what happens when one dies or the daemon dies."""

from __future__ import annotations

import os
import signal
from collections.abc import Iterator
from pathlib import Path

import orjson
import pytest

from bridge.adapters.processes import ChildProcess
from bridge.dtn.definitions import DefinitionSet
from bridge.dtn.reader import FlowFileReader
from bridge.errors import WorkerError
from bridge.outbound import InlineChecks, MessageChecker
from bridge.outbound.workers import CheckWorkers
from bridge.ports import Delivery
from bridge.rules import parse_rules
from bridge.service import check_values
from bridge.signing import Signer, TrustStore
from tests.conftest import EXAMPLES
from tests.outbound.outbound_helpers import RULES, check_config, new_event, numbered_events, source_file


@pytest.fixture
def signer() -> Signer:
    return Signer.generate()


@pytest.fixture
def workers(tmp_path: Path, signer: Signer) -> Iterator[CheckWorkers]:
    started = CheckWorkers(check_values(check_config(tmp_path, signer)), processes=2, spawn=ChildProcess)
    started.start()
    yield started
    started.close()


def deliveries(signer: Signer, reader: FlowFileReader, count: int) -> list[Delivery]:
    """Valid new events, a source file's events and manifest, events governance refuses, unsigned and not-JSON."""
    template = source_file(EXAMPLES / "D0010002.txt", reader).events[0]
    source = source_file(EXAMPLES / "D0030001.txt", reader)
    bodies = [orjson.dumps(signer.sign(event)) for event in numbered_events(template, count)]
    bodies += [orjson.dumps(signer.sign(event)) for event in [*source.events, source.manifest]]
    bodies += [orjson.dumps(signer.sign(new_event(template, n, to="SYNC"))) for n in range(3)]
    bodies += [orjson.dumps(new_event(template, 99)), b"not json"]
    return [Delivery(body, {}, str(tag), "outbound.x", False, tag) for tag, body in enumerate(bodies, 1)]


def test_same_answers_in_delivery_order(workers: CheckWorkers, signer: Signer, reader: FlowFileReader,
                                        definitions: DefinitionSet) -> None:
    """Batches go round robin to two processes; the answers come back in submission order and equal the
    daemon-thread stage's, decisions included."""
    rules = parse_rules(RULES, participant_id="SYNA", participant_role="X", definitions=definitions)
    inline = InlineChecks(MessageChecker(definitions, TrustStore.from_jwks(signer.public_jwks()), rules))
    sent = deliveries(signer, reader, 300)
    taken = []
    for delivery in sent:
        workers.submit(delivery)
        inline.submit(delivery)
        taken += workers.take(drain=False)
    taken += workers.take(drain=True)
    assert workers.pending == 0
    assert [delivery.delivery_tag for delivery, _ in taken] == [delivery.delivery_tag for delivery in sent]
    assert [checked for _, checked in taken] == [checked for _, checked in inline.take(drain=True)]
    codes = [getattr(checked.outcome, "code", None) for _, checked in taken]
    assert codes[-2:] == ["missing_signature", "not_json"] and codes.count(None) == 300 + 9
    assert sum(1 for _, checked in taken if checked.decision is not None and not checked.decision.accepted) == 3


def test_a_dead_worker_is_an_error_then_replaced(workers: CheckWorkers, signer: Signer,
                                                 reader: FlowFileReader) -> None:
    """kill -9 of a check worker: taking its answers raises WorkerError (the loop gives the deliveries back to the
    broker); after `reset` both workers answer again."""
    sent = deliveries(signer, reader, 200)
    for delivery in sent[:100]:
        workers.submit(delivery)
    victim = workers._children[0].pid
    assert victim is not None
    os.kill(victim, signal.SIGKILL)
    with pytest.raises(WorkerError, match="ended unexpectedly"):
        workers.take(drain=True)
    workers.reset()
    assert workers.pending == 0 and all(child.running for child in workers._children)
    assert workers._children[0].pid != victim
    for delivery in sent[100:]:
        workers.submit(delivery)
    taken = workers.take(drain=True)
    assert [delivery.delivery_tag for delivery, _ in taken] == [delivery.delivery_tag for delivery in sent[100:]]


def test_started_by_the_first_message(tmp_path: Path, signer: Signer) -> None:
    """A daemon with no outbound traffic spends no memory on check workers: they start with the first message."""
    lazy = CheckWorkers(check_values(check_config(tmp_path, signer)), processes=1, spawn=ChildProcess)
    try:
        assert lazy._children[0].pid is None
        lazy.submit(Delivery(b"not json", {}, None, "k", False, 1))
        [(_, checked)] = lazy.take(drain=True)
        assert getattr(checked.outcome, "code", None) == "not_json" and lazy._children[0].pid is not None
    finally:
        lazy.close()
