"""A bridge's outbound loop in its own process, for the kill -9 tests; optionally it kills itself at a chosen
moment of the write protocol (after recording, after linking, before acking) to hit each crash window exactly.

    python -m tests.outbound.outbound_crash_child <state.json>
"""

from __future__ import annotations

import os
import signal
import sys
import threading
from pathlib import Path
from typing import Any

import orjson

from bridge.adapters.ledger import Ledger
from bridge.adapters.rabbitmq import RabbitConsumer
from bridge.adapters.rabbitmq.topology import Topology
from bridge.adapters.spool import FolderOutbox
from bridge.config import OutboundConfig
from bridge.dtn.definitions import load_definitions
from bridge.outbound import InlineChecks, MessageChecker, OutboundLoop, OutboundWriter
from bridge.signing import TrustStore

REPO = Path(__file__).resolve().parents[2]


def die() -> None:
    os.kill(os.getpid(), signal.SIGKILL)


def arm(crash: str, writer: OutboundWriter, after_files: int) -> None:
    """Replace one step of the protocol by 'do it (half of it), then SIGKILL' once `after_files` files exist."""
    done = [0]

    def due() -> bool:
        return done[0] >= after_files

    outbox = writer.outbox
    if crash == "mid_write":
        original_write = outbox.write_synced

        def write(path: Path, data: bytes) -> None:
            if due():
                with open(path, "wb") as stream:
                    stream.write(data[: len(data) // 2])
                die()
            original_write(path, data)

        outbox.write_synced = write  # type: ignore[method-assign]
    elif crash == "after_link":
        original_link = outbox.link

        def link(tmp: Path, path: Path) -> bool:
            linked = original_link(tmp, path)
            if due():
                die()
            return linked

        outbox.link = link  # type: ignore[method-assign]
    finish = writer.ledger.finish_outbound_file

    def finish_then(file_id: int) -> None:
        finish(file_id)
        done[0] += 1
        if crash == "before_ack" and due():
            die()

    writer.ledger.finish_outbound_file = finish_then  # type: ignore[method-assign]


def main(state_path: str) -> None:
    state: dict[str, Any] = orjson.loads(Path(state_path).read_bytes())
    topology = Topology().with_suffix(state["suffix"])
    config = OutboundConfig(folder=Path(state["folder"]), batch_size=state["batch_size"],
                            batch_seconds=state["batch_seconds"], prefetch=state["prefetch"])
    ledger = Ledger(Path(state["ledger"]))
    definitions = load_definitions(REPO / "flow_definitions")
    writer = OutboundWriter(definitions, ledger, config, outbox=FolderOutbox(config.folder))
    checks = InlineChecks(MessageChecker(definitions, TrustStore.from_jwks(state["jwks"])))
    if state.get("crash"):
        arm(state["crash"], writer, state.get("after_files", 0))
    assert topology.outbound_queue is not None
    consumer = RabbitConsumer([state["url"]], queue=topology.outbound_queue, prefetch=config.prefetch,
                              topology=topology, client_name=state["client_name"])
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    OutboundLoop(consumer, writer, checks, poll_seconds=0.1).run(stop)
    ledger.close()


if __name__ == "__main__":
    main(sys.argv[1])
