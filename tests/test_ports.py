"""bridge.ports: the chains depend on the broker ports, not on the RabbitMQ adapter (nor on pika)."""

from __future__ import annotations

import subprocess
import sys

import pytest

from bridge.ports import Backoff, BrokerRefusal, MessagesRejected
from tests.conftest import REPO


@pytest.mark.parametrize("module", ["bridge.outbound.batching", "bridge.outbound", "bridge.inbound", "bridge.replay",
                                    "bridge.inbound.build", "bridge.ports"])
def test_chain_modules_load_no_pika(module: str) -> None:
    """Importing a chain module in a fresh interpreter loads neither pika nor the RabbitMQ adapter."""
    probe = (f"import sys, {module}\n"
             "prefixes = ('pika.', 'bridge.adapters.rabbitmq')\n"
             "loaded = sorted(m for m in sys.modules if m == 'pika' or m.startswith(prefixes))\n"
             "assert not loaded, loaded\n")
    done = subprocess.run([sys.executable, "-c", probe], cwd=REPO, capture_output=True, text=True, timeout=60,
                          check=False)
    assert done.returncode == 0, done.stderr


def test_backoff_is_jittered_and_capped() -> None:
    """Delays grow exponentially, stay within [cap/2, cap] and never exceed the maximum."""
    b = Backoff(initial=1.0, maximum=30.0)
    assert b.delay(1, rng=lambda: 0.0) == 0.5 and b.delay(1, rng=lambda: 1.0) == 1.0
    assert b.delay(3, rng=lambda: 1.0) == 4.0
    assert b.delay(50, rng=lambda: 1.0) == 30.0


def test_messages_rejected_names_the_first_and_counts_the_rest() -> None:
    """The error's text names the first refused message and how many more there were."""
    refusals = [BrokerRefusal("a", "nacked", "queue full"), BrokerRefusal("b", "returned", "NO_ROUTE")]
    error = MessagesRejected(refusals, 3)
    assert (error.message_id, error.reason, error.total) == ("a", "queue full", 3)
    assert str(error) == "message 'a' was nacked: queue full (and 2 more)"
