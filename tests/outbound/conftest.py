"""Fixtures for the outbound tests: a signer and its trust store, a checker, an event template, a ledger, a folder,
a publisher to the test topology (the other broker ones are in tests/conftest.py)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from bridge.adapters.ledger import Ledger
from bridge.adapters.rabbitmq import RabbitPublisher
from bridge.adapters.rabbitmq.topology import Topology
from bridge.config import OutboundConfig
from bridge.dtn.definitions import DefinitionSet
from bridge.dtn.reader import FlowFileReader
from bridge.outbound import MessageChecker
from bridge.signing import Signer, TrustStore
from tests.conftest import EXAMPLES, Admin
from tests.outbound.outbound_helpers import FakeClock, source_file


@pytest.fixture(scope="session")
def signer() -> Signer:
    """One key of the default algorithm (ES256), not bound to a participant: it may sign events of any sender."""
    return Signer.generate()


@pytest.fixture(scope="session")
def trust(signer: Signer) -> TrustStore:
    return TrustStore.from_jwks(signer.public_jwks())


@pytest.fixture
def checker(definitions: DefinitionSet, trust: TrustStore) -> MessageChecker:
    return MessageChecker(definitions, trust)


@pytest.fixture
def template(reader: FlowFileReader) -> dict[str, Any]:
    """An event of the D0010002 example, to vary."""
    return source_file(EXAMPLES / "D0010002.txt", reader).events[0]


@pytest.fixture
def ledger(tmp_path: Path) -> Iterator[Ledger]:
    with Ledger(tmp_path / "ledger.sqlite3") as opened:
        yield opened


@pytest.fixture
def out_dir(tmp_path: Path) -> Path:
    folder = tmp_path / "outbound"
    folder.mkdir()
    return folder


@pytest.fixture
def config(out_dir: Path) -> OutboundConfig:
    return OutboundConfig(folder=out_dir, batch_size=100, batch_seconds=30.0, prefetch=500)


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def publisher(amqp_url: str, topology: Topology, admin: Admin) -> Iterator[RabbitPublisher]:
    pub = RabbitPublisher([amqp_url], topology=topology, client_name="dtn-bridge-test-publisher")
    pub.connect()
    try:
        yield pub
    finally:
        pub.close()
