"""Shared fixtures: the shipped definitions, the real samples and examples, and the real broker.

Broker tests use the real RabbitMQ (scripts/test and CI start it) with unique names per test, deleted afterwards;
pika is used directly here only to inspect and tidy the broker (the adapters are what is under test).
"""

from __future__ import annotations

import logging
import os
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pika
import pika.exceptions
import pytest
import structlog
import yaml
from hypothesis import settings

# CI runs the property tests with a fixed seed, so that a submission's result does not depend on chance; a developer's
# run explores new examples every time (and `scripts/soak` many more).
settings.register_profile("ci", derandomize=True, print_blob=True)
if os.environ.get("CI"):
    settings.load_profile("ci")

from bridge.adapters.rabbitmq.topology import Topology
from bridge.dtn.compiled import FlowDefinition
from bridge.dtn.definitions import DefinitionSet, load_definition, load_definitions
from bridge.dtn.reader import FlowFileReader

REPO = Path(__file__).resolve().parents[1]
# Fixtures that reach a RabbitMQ: the shared one (amqp_url, so admin and the e2e bridges), or nodes of a test's own
# (tls_node: tests/adapters/test_tls.py; cluster: tests/faults/test_cluster_failover.py). A test using one is `broker`.
BROKER_FIXTURES = {"amqp_url", "tls_node", "cluster"}
#: Tests that must not run beside others (scripts/test runs them alone, after the rest has run in parallel): they
#: act on the shared broker as a whole, start broker nodes on fixed ports, or measure gaps of time.
SERIAL = {
    "tests/adapters/test_tls.py": "starts a broker node of its own on fixed ports",
    "tests/faults/test_cluster_failover.py": "starts a cluster of broker nodes on fixed ports",
    "tests/faults/test_connection_drops.py": "closes every connection to the shared broker",
    "tests/e2e/test_inbound_daemon.py::TestSurvival::test_broker_restart_mid_file": "restarts the shared broker",
    "tests/e2e/test_watchdog.py": "measures the gaps between watchdog pings",
}
# Real third-party files (licences of their own, not committed): beside the clone in CI, or $DTN_SAMPLES. A clone on
# its own passes its tests: a test that needs them skips saying so, the others use the repository's own data.
SAMPLES = Path(os.environ.get("DTN_SAMPLES", REPO.parent / "shared" / "dtn-samples"))
EXAMPLES = REPO / "examples"


@pytest.fixture(autouse=True)
def _default_logging() -> Iterator[None]:
    """A test that configures logging (configure_logging, or `dtn-bridge run` in-process) leaves structlog, the
    standard library's root logger and the loggers' levels as they were: otherwise a connection thread it left behind
    prints pika's debug lines to the terminal during later tests."""
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    levels = {name: logger.level for name, logger in logging.Logger.manager.loggerDict.items()
              if isinstance(logger, logging.Logger)}  # pika's, which configure_logging sets, among them
    yield
    structlog.reset_defaults()
    root.handlers[:] = handlers
    root.setLevel(level)
    for name, logger in list(logging.Logger.manager.loggerDict.items()):
        if isinstance(logger, logging.Logger):
            logger.setLevel(levels.get(name, logging.NOTSET))  # one made during the test: as it was made


@pytest.fixture(scope="session")
def definitions() -> DefinitionSet:
    return load_definitions(REPO / "flow_definitions")


@pytest.fixture(scope="session")
def reader(definitions: DefinitionSet) -> FlowFileReader:
    return FlowFileReader(definitions)


def curated_definitions() -> dict[str, FlowDefinition]:
    """The complete hand-written definitions of flow_definitions/curated/ (the 17 written before the importer); the
    other files there are partial overlays that only add to the catalogue (a named check on a group)."""
    folder = REPO / "flow_definitions" / "curated"
    return {path.stem: load_definition(path) for path in sorted(folder.glob("*.yaml"))
            if all("items" in group for group in yaml.safe_load(path.read_text())["groups"])}


def sample(name: str) -> Path:
    """A real sample file from ../shared/dtn-samples (CI lays shared/ beside the clone); without them the test
    skips with the reason."""
    if not SAMPLES.is_dir():
        pytest.skip(f"needs the real sample files, not in this repository: {SAMPLES} is absent (set DTN_SAMPLES)")
    matches = sorted(SAMPLES.glob(f"*{name}*"))
    assert matches, f"no sample matching {name!r} in {SAMPLES}"
    return matches[0]


def samples(names: list[str]) -> list[Path]:
    """The named real samples when they are there, else none: for tests whose own data (examples/) suffices and
    the real files add to it."""
    return [sample(name) for name in names] if SAMPLES.is_dir() else []


AMQP_URL = os.environ.get("DTN_TEST_AMQP_URL", "amqp://guest:guest@127.0.0.1:5672/%2F")


class Admin:
    """A plain pika connection for declaring probe queues, reading them back and deleting test objects."""

    def __init__(self, url: str) -> None:
        self.connection = pika.BlockingConnection(pika.URLParameters(url))
        self.channel = self.connection.channel()
        self.queues: list[str] = []
        self.exchanges: list[str] = []

    def probe_queue(self, exchange: str, routing_key: str, arguments: dict[str, Any] | None = None,
                    durable: bool = False) -> str:
        """Declare a classic queue bound to `exchange`, removed after the test (durable: survives a restart)."""
        name = f"dtn.test.probe-{uuid.uuid4().hex[:8]}"
        self.channel.queue_declare(name, durable=durable, arguments=arguments)
        self.channel.queue_bind(name, exchange, routing_key=routing_key)
        self.queues.append(name)
        return name

    def read(self, queue: str, count: int, timeout: float = 10.0) -> list[tuple[Any, Any, bytes]]:
        """Read up to `count` messages (auto-ack), stopping after `timeout` seconds of silence."""
        got: list[tuple[Any, Any, bytes]] = []
        if count <= 0:
            return got
        for method, props, body in self.channel.consume(queue, auto_ack=True, inactivity_timeout=timeout):
            if method is None:
                break
            got.append((method, props, body))
            if len(got) >= count:
                break
        self.channel.cancel()
        return got

    def read_all(self, queue: str, timeout: float = 60.0) -> list[tuple[Any, Any, bytes]]:
        """Every message in `queue`, as many as the broker counts there, not until a silence: a loaded broker can
        pause longer than any silence, and a file's tail left behind would look lost."""
        expected = self.message_count(queue)
        got = self.read(queue, expected, timeout=timeout)
        assert len(got) == expected, f"read {len(got)} of the {expected} messages in {queue}"
        return got

    def message_count(self, queue: str) -> int:
        """Ready messages in `queue` (passive declare)."""
        return int(self.channel.queue_declare(queue, passive=True).method.message_count)

    def delete(self, topology: Topology) -> None:
        """Delete every queue and exchange of `topology` plus the probes."""
        queues = [q.name for q in topology.queues] + self.queues
        exchanges = [topology.exchange, topology.dead_letter_exchange] + self.exchanges
        if self.channel.is_closed:
            self.channel = self.connection.channel()
        for queue in queues:
            self.channel.queue_delete(queue)
        for exchange in exchanges:
            self.channel.exchange_delete(exchange)

    def reconnect(self) -> None:
        """A new connection, after the broker was restarted under the old one."""
        self.connection = pika.BlockingConnection(pika.URLParameters(AMQP_URL))
        self.channel = self.connection.channel()

    def close(self) -> None:
        """Close the admin connection."""
        if self.connection.is_open:
            self.connection.close()


@pytest.fixture(scope="session")
def amqp_url() -> str:
    """The broker URL. No broker is a failure, not a skip: scripts/test and CI start one."""
    try:
        pika.BlockingConnection(pika.URLParameters(AMQP_URL)).close()
    except pika.exceptions.AMQPError as exc:
        pytest.fail(f"RabbitMQ not reachable at {AMQP_URL} (scripts/test starts it): {exc!r}")
    return AMQP_URL


@pytest.fixture
def suffix() -> str:
    """A unique suffix for this test's broker objects."""
    return f".test-{uuid.uuid4().hex[:10]}"


@pytest.fixture
def topology(suffix: str) -> Topology:
    """The production topology with unique names."""
    return Topology().with_suffix(suffix)


@pytest.fixture
def client_name(suffix: str) -> str:
    """A unique connection name, so a test can have exactly its own connection closed by the broker."""
    return f"dtn-bridge{suffix}"


@pytest.fixture
def admin(amqp_url: str, topology: Topology) -> Iterator[Admin]:
    """An inspection connection; deletes the test topology and probes afterwards."""
    admin = Admin(amqp_url)
    try:
        yield admin
    finally:
        try:
            admin.delete(topology)
        finally:
            admin.close()


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Mark what needs RabbitMQ `broker` (by the fixtures it uses), the fault tests `slow` and the SERIAL ones
    `serial`, so that `pytest -m "not broker"` runs the pure tests alone (markers registered in pyproject.toml)."""
    faults = REPO / "tests" / "faults"
    for item in items:
        if BROKER_FIXTURES & set(getattr(item, "fixturenames", ())):
            item.add_marker(pytest.mark.broker)
        if item.path.is_relative_to(faults):
            item.add_marker(pytest.mark.slow)
        if any(item.nodeid == name or item.nodeid.startswith(name + "::") for name in SERIAL):
            item.add_marker(pytest.mark.serial)
