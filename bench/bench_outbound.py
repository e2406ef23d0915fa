"""Outbound throughput: events/s through verify + batch + write + ack, against real RabbitMQ, compared with bare
verification of the same events on one core (the bound: every event needs one verification). The events are signed
with ES256, the default algorithm of new keys, or EdDSA (--alg EdDSA).

Target (issue): at least 60% of the bare-verification rate. Run: .venv/bin/python bench/bench_outbound.py [N]
[--alg ES256|EdDSA]
Needs RabbitMQ at DTN_TEST_AMQP_URL (default amqp://guest:guest@127.0.0.1:5672/%2F); uses its own topology.
Settings compared: checks in the daemon's thread (`outbound.workers: 0`), and in 1 or 2 worker processes.
"""

from __future__ import annotations

import argparse
import json
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
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.utils import encode_dss_signature

from bridge.adapters.ledger import Ledger
from bridge.adapters.processes import ChildProcess
from bridge.adapters.rabbitmq import RabbitConsumer, RabbitPublisher
from bridge.adapters.rabbitmq.topology import Topology
from bridge.adapters.spool import FolderOutbox
from bridge.config import BridgeConfig, OutboundConfig, load_config
from bridge.dtn.definitions import load_definitions
from bridge.dtn.reader import FlowFileReader
from bridge.inbound.flowfile import check_file, file_events
from bridge.outbound import CheckStage, InlineChecks, MessageChecker, OutboundLoop, OutboundWriter
from bridge.outbound.workers import CheckWorkers
from bridge.ports import OutgoingMessage
from bridge.service import check_values
from bridge.signing import Signer, TrustStore, canonicalize
from bridge.signing.jws import ALG_EDDSA, ALG_ES256, DEFAULT_ALGORITHM, b64url_decode, signing_input

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
    """Verifications per second over the same signing inputs with the bare key (canonicalization excluded, and for
    ES256 the R || S -> DER conversion too: the bound)."""
    key = trust.keys[0].public_key
    prepared = []
    for event in signed:
        header, _, signature = event["signature"].partition("..")
        body = {k: v for k, v in event.items() if k != "signature"}
        raw = b64url_decode(signature, "sig")
        if isinstance(key, ec.EllipticCurvePublicKey):
            raw = encode_dss_signature(int.from_bytes(raw[:32], "big"), int.from_bytes(raw[32:], "big"))
        prepared.append((raw, signing_input(header.encode(), canonicalize(body))))
    if isinstance(key, ec.EllipticCurvePublicKey):
        ecdsa = ec.ECDSA(hashes.SHA256())

        def verify(signature: bytes, data: bytes) -> None:
            key.verify(signature, data, ecdsa)  # type: ignore[union-attr]
    else:
        verify = key.verify  # type: ignore[assignment]
    best = 0.0
    for _ in range(3):
        start = time.perf_counter()
        for signature, data in prepared:
            verify(signature, data)
        best = max(best, len(prepared) / (time.perf_counter() - start))
    return best


def bridge_config(folder: Path, jwks: dict[str, Any]) -> BridgeConfig:
    """What a check worker loads: the flow definitions and the trust store (no governance rules in the way)."""
    (folder / "trust.jwks.json").write_text(json.dumps(jwks))
    (folder / "bridge.yaml").write_text(json.dumps({
        "participant": {"id": "MRCY", "role": "X"}, "flows": {"definitions": str(REPO / "flow_definitions")},
        "signing": {"trust": str(folder / "trust.jwks.json")}, "rules": {"addressee": {"enforce": False}},
        "log": {"level": "warning", "format": "json"}}))
    return load_config(folder / "bridge.yaml")


def outbound_rate(bodies: list[bytes], jwks: dict[str, Any], batch_size: int, workers: int) -> tuple[float, int]:
    """Events per second from the first delivery to the last ack, with the queue pre-filled (worker processes are
    started before the clock starts, as the daemon starts them at its start)."""
    topology = Topology().with_suffix(f".bench-{uuid.uuid4().hex[:8]}")
    publisher = RabbitPublisher([URL], topology=topology, client_name="dtn-bridge-bench-publisher")
    publisher.publish_all(OutgoingMessage("outbound.D0010002.UDMS.MRCY", body, str(n)) for n, body in enumerate(bodies))
    publisher.close()
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp) / "out"
        folder.mkdir()
        prefetch = 2 * batch_size  # as the daemon's defaults: the next file's events are checked while one is written
        config = OutboundConfig(folder=folder, batch_size=batch_size, batch_seconds=5.0, prefetch=prefetch)
        ledger = Ledger(Path(tmp) / "ledger.sqlite3")
        definitions = load_definitions(REPO / "flow_definitions")
        writer = OutboundWriter(definitions, ledger, config, outbox=FolderOutbox(config.folder, config.file_mode))
        checks: CheckStage
        if workers:
            checks = CheckWorkers(check_values(bridge_config(Path(tmp), jwks)), workers, spawn=ChildProcess)
            checks.start()
            checks.take(drain=True)
            time.sleep(1.5)  # the workers load definitions and keys
        else:
            checks = InlineChecks(MessageChecker(definitions, TrustStore.from_jwks(jwks)))
        assert topology.outbound_queue is not None
        consumer = RabbitConsumer([URL], queue=topology.outbound_queue, prefetch=prefetch, topology=topology,
                                  client_name="dtn-bridge-bench-consumer")
        consumer.connect()
        loop = OutboundLoop(consumer, writer, checks, poll_seconds=0.05)
        stop = threading.Event()
        thread = threading.Thread(target=loop.run, args=(stop,), daemon=True)
        last = orjson.loads(bodies[-1])
        start = time.perf_counter()
        thread.start()
        while ledger.seen_events([(last["source"], last["id"])]) == set() or _remaining(topology) > 0:
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
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("count", nargs="?", type=int, default=20000, help="events (default 20000)")
    parser.add_argument("--alg", choices=(ALG_ES256, ALG_EDDSA), default=DEFAULT_ALGORITHM, help="signing algorithm")
    args = parser.parse_args()
    count, alg = args.count, args.alg
    signer = Signer.generate(alg)
    trust = TrustStore.from_jwks(signer.public_jwks())
    import logging

    import structlog

    structlog.configure(wrapper_class=structlog.make_filtering_bound_logger(logging.WARNING))
    signed = [signer.sign(event) for event in events(count)]
    bodies = [orjson.dumps(event) for event in signed]
    bound = bare_verify_rate(signed, trust)
    print(f"events: {count}, ~{sum(map(len, bodies)) // count} bytes each (real D0010 instances, {alg})")
    print(f"bare {alg:5} verify:              {bound:10,.0f} events/s")
    rates = {}
    for workers in (0, 1, 2):
        rate, files = outbound_rate(bodies, signer.public_jwks(), 1000, workers)
        bound = max(bound, bare_verify_rate(signed[:2000], trust))  # re-measured: the machine may be shared
        where = f"{workers} verify worker process(es)" if workers else "verified in the daemon's thread"
        rates[workers] = rate
        print(f"outbound, batch 1000, prefetch 2000, {where:32s}: {rate:8,.0f} events/s  "
              f"({rate / bound:5.1%} of the bound, {files} files)")
    print(f"bare {alg:5} verify (best):       {bound:10,.0f} events/s")
    best = max(rates, key=lambda workers: rates[workers])
    share = rates[best] / bound
    verdict = "PASS" if share >= 0.6 else "MISS"
    print(f"target outbound >= 60% of the bound: {share:.1%} with {best} worker(s)  {verdict}")


if __name__ == "__main__":
    main()
