"""Outbound throughput: events/s through verify + batch + write + ack, against real RabbitMQ, compared with bare
Ed25519 verification of the same events (the bound: every event needs one verification).

Target (issue): at least 60% of the bare-verification rate. Run: .venv/bin/python bench/bench_outbound.py [N]
Needs RabbitMQ at DTN_TEST_AMQP_URL (default amqp://guest:guest@127.0.0.1:5672/%2F); uses its own topology.
"""

from __future__ import annotations

import os
import sys
import tempfile
import threading
import time
import uuid
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import orjson
import pika

from bridge.adapters.ledger import Ledger
from bridge.adapters.rabbitmq import OutgoingMessage, RabbitConsumer, RabbitPublisher
from bridge.adapters.topology import Topology
from bridge.config import OutboundConfig
from bridge.dtn.definitions import load_definitions
from bridge.dtn.reader import FlowFileReader
from bridge.flowfile import check_file, file_events
from bridge.outbound import OutboundLoop, OutboundWriter
from bridge.signing import Signer, TrustStore, canonicalize
from bridge.signing.jws import b64url_decode, signing_input

REPO = Path(__file__).resolve().parent.parent
URL = os.environ.get("DTN_TEST_AMQP_URL", "amqp://guest:guest@127.0.0.1:5672/%2F")


def events(count: int) -> list[dict[str, Any]]:
    """`count` new D0010 events made from the instances of the real Kraken D0010 sample (one MPAN, a meter, one
    or two register readings each: the common shape), each with its own id and meter id."""
    reader = FlowFileReader(load_definitions(REPO / "flow_definitions"))
    path = next((REPO.parent / "shared" / "dtn-samples").glob("*DTC5259515123502080915D0010*"))
    templates = list(file_events(path, reader, check_file(path, reader)))
    out = []
    for n in range(count):
        template = templates[n % len(templates)]
        data = orjson.loads(orjson.dumps(template["data"]))
        data["mpan_cores"]["meter_reading_types"][0]["meter_id"] = f"M{n:07d}"
        out.append({"specversion": "1.0", "id": str(uuid.uuid4()), "source": template["source"],
                    "type": template["type"], "datacontenttype": "application/json", "dtcfromrole": "D",
                    "dtcfrom": "UDMS", "dtctorole": "X", "dtcto": "MRCY", "dtctestflag": "OPER", "data": data})
    return out


def bare_verify_rate(signed: list[dict[str, Any]], trust: TrustStore) -> float:
    """Ed25519 verifications per second over the same signing inputs (canonicalization excluded: the bound)."""
    key = trust.keys[0].public_key
    prepared = []
    for event in signed:
        header, _, signature = event["signature"].partition("..")
        body = {k: v for k, v in event.items() if k != "signature"}
        prepared.append((b64url_decode(signature, "sig"), signing_input(header.encode(), canonicalize(body))))
    best = 0.0
    for _ in range(3):
        start = time.perf_counter()
        for signature, data in prepared:
            key.verify(signature, data)  # type: ignore[union-attr]
        best = max(best, len(prepared) / (time.perf_counter() - start))
    return best


def outbound_rate(bodies: list[bytes], trust: TrustStore, batch_size: int, threads: int) -> tuple[float, int]:
    """Events per second from the first delivery to the last ack, with the queue pre-filled."""
    topology = Topology().with_suffix(f".bench-{uuid.uuid4().hex[:8]}")
    publisher = RabbitPublisher([URL], topology=topology, client_name="dtn-bridge-bench-publisher")
    publisher.publish_all(OutgoingMessage("outbound.D0010002.UDMS.MRCY", body, str(n)) for n, body in enumerate(bodies))
    publisher.close()
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp) / "out"
        folder.mkdir()
        config = OutboundConfig(folder=folder, batch_size=batch_size, batch_seconds=5.0, prefetch=batch_size)
        ledger = Ledger(Path(tmp) / "ledger.sqlite3")
        writer = OutboundWriter(load_definitions(REPO / "flow_definitions"), trust, ledger, config)
        assert topology.outbound_queue is not None
        consumer = RabbitConsumer([URL], queue=topology.outbound_queue, prefetch=batch_size, topology=topology,
                                  client_name="dtn-bridge-bench-consumer")
        consumer.connect()
        loop = OutboundLoop(consumer, writer, poll_seconds=0.05, verify_threads=threads)
        stop = threading.Event()
        thread = threading.Thread(target=loop.run, args=(stop,), daemon=True)
        start = time.perf_counter()
        thread.start()
        while ledger.seen_events([orjson.loads(bodies[-1])["id"]]) == set() or _remaining(topology) > 0:
            time.sleep(0.005)
        elapsed = time.perf_counter() - start
        stop.set()
        thread.join(30)
        files = len([p for p in folder.iterdir() if not p.name.startswith(".")])
        ledger.close()
    _delete(topology)
    return len(bodies) / elapsed, files


def _remaining(topology: Topology) -> int:
    connection = pika.BlockingConnection(pika.URLParameters(URL))
    try:
        return int(connection.channel().queue_declare(topology.outbound_queue or "", passive=True).method.message_count)
    finally:
        connection.close()


def _delete(topology: Topology) -> None:
    connection = pika.BlockingConnection(pika.URLParameters(URL))
    channel = connection.channel()
    for queue in topology.queues:
        channel.queue_delete(queue.name)
    for exchange in (topology.exchange, topology.dead_letter_exchange):
        channel.exchange_delete(exchange)
    connection.close()


def main() -> None:
    count = int(sys.argv[1]) if len(sys.argv) > 1 else 20000
    signer = Signer.generate()
    trust = TrustStore.from_jwks(signer.public_jwks())
    import logging

    import structlog

    structlog.configure(wrapper_class=structlog.make_filtering_bound_logger(logging.WARNING))
    signed = [signer.sign(event) for event in events(count)]
    bodies = [orjson.dumps(event) for event in signed]
    bound = bare_verify_rate(signed, trust)
    print(f"events: {count}, ~{sum(map(len, bodies)) // count} bytes each (real D0010 instances, Ed25519)")
    print(f"bare Ed25519 verify:            {bound:10,.0f} events/s")
    for batch_size, threads in ((200, 0), (1000, 0), (1000, 1), (1000, 2)):
        rate, files = outbound_rate(bodies, trust, batch_size, threads)
        bound = max(bound, bare_verify_rate(signed[:2000], trust))  # re-measured: the machine may be shared
        print(f"outbound, batch/prefetch {batch_size:5d}, {threads} verify thread(s): {rate:8,.0f} events/s  "
              f"({rate / bound:5.1%} of the bound, {files} files)")
    print(f"bare Ed25519 verify (best):     {bound:10,.0f} events/s")

if __name__ == "__main__":
    main()
