"""DTN -> events -> DTN through the running daemon: the files written are byte for byte the files dropped."""

from __future__ import annotations

import json
import signal
import subprocess
from collections.abc import Callable
from typing import Any

import pika
import pytest

from bridge.cli import main
from tests.conftest import EXAMPLES, sample, samples
from tests.e2e.conftest import Bridge
from tests.helpers import wait_until

VALID_SAMPLES = ["DTC5259515123502080915D0010", "ocdiff_D0155001_a", "OVOE1359", "OVOE1429"]


class TestRoundTrip:
    def test_inbound_events_routed_back_make_the_same_files(self, make_bridge: Any,
                                                            capsys: pytest.CaptureFixture[str]) -> None:
        """Every example and valid real sample comes back out of the outbound folder unchanged.

        OVOE1359 has 209 flow instances: an original file is reproduced when all its events fit the prefetch window.
        """
        bridge: Bridge = make_bridge(outbound={"prefetch": 1000})
        files = sorted(EXAMPLES.glob("*.txt")) + samples(VALID_SAMPLES)
        process = bridge.run_files(files)
        bridge.route_back()
        bridge.stop_when_written(process, len(files))
        bridge.assert_reproduced(files)
        assert bridge.admin.message_count(bridge.topology.outbound_rejected_queue or "") == 0
        assert main(["report", "--config", str(bridge.config_path), "--json"]) == 0
        rows = json.loads(capsys.readouterr().out)["rows"]
        assert sum(row["files_in"] for row in rows) == sum(row["files_written"] for row in rows) == len(files)
        assert sum(row["events_out"] for row in rows) == sum(row["events_written"] for row in rows)

    def test_tampered_events_are_dead_lettered(self, make_bridge: Any) -> None:
        """A changed event never reaches a file; it lands in the rejected queue with its reason."""
        bridge: Bridge = make_bridge()
        got = route_back_and_collect_rejects(bridge, lambda body: body.replace(b'"bsc_validation_status":"V"',
                                                                               b'"bsc_validation_status":"F"'))
        assert len(got) == 11 and {props.headers["x-dtn-reject-code"] for _m, props, _b in got} == {"bad_signature"}
        assert bridge.outbound_files() == []

    @pytest.mark.parametrize("workers", [2, 0], ids=["check-workers", "in-the-daemon"])
    def test_outbound_governance_dead_letters_with_rule(self, make_bridge: Any, workers: int) -> None:
        """An outbound event to a denied participant is dead-lettered with the rule as its code; no file. The same
        whether check worker processes or the daemon's own thread judge it (`outbound.workers`)."""
        bridge: Bridge = make_bridge(rules={"participants": {"outbound": {"deny": ["MRCY"]}}},
                                     outbound={"workers": workers})
        got = route_back_and_collect_rejects(bridge, lambda body: body)
        assert {props.headers["x-dtn-reject-code"] for _m, props, _b in got} == {"participant.denied"}
        assert len(got) == 11 and bridge.outbound_files() == []


    def test_a_reload_brings_new_outbound_rules(self, make_bridge: Any) -> None:
        """SIGHUP with an outbound deny rule: the check workers started from then on judge by it."""
        bridge: Bridge = make_bridge()

        def deny_mrcy(process: subprocess.Popen[bytes]) -> None:
            config = json.loads(bridge.config_path.read_text())
            config["rules"] = {**config.get("rules", {}), "participants": {"outbound": {"deny": ["MRCY"]}}}
            bridge.config_path.write_text(json.dumps(config))
            process.send_signal(signal.SIGHUP)
            wait_until(lambda: "config_reloaded" in (bridge.root / "daemon.log").read_text(), 20,
                       "the daemon did not reload")

        got = route_back_and_collect_rejects(bridge, lambda body: body, before_routing=deny_mrcy)
        assert {props.headers["x-dtn-reject-code"] for _m, props, _b in got} == {"participant.denied"}
        assert len(got) == 11 and bridge.outbound_files() == []


def route_back_and_collect_rejects(bridge: Bridge, change: Callable[[bytes], bytes],
                                   before_routing: Callable[[subprocess.Popen[bytes]], None] = lambda _p: None
                                   ) -> list[Any]:
    """Run the daemon on the Kraken sample, route its events (changed) back to outbound.#, and read the rejects."""
    process = bridge.start_process()
    bridge.wait_running(process)
    bridge.drop(sample("DTC5259515123502080915D0010"))
    bridge.wait_settled(1)
    before_routing(process)
    for method, props, body in bridge.admin.read_all(bridge.capture):
        if method.routing_key.startswith("inbound."):
            bridge.admin.channel.basic_publish(bridge.topology.exchange, "outbound." + method.routing_key[8:],
                                               change(body), pika.BasicProperties(message_id=props.message_id))
    rejected = bridge.topology.outbound_rejected_queue or ""
    try:
        wait_until(lambda: bridge.admin.message_count(rejected) >= 11, 30,
                   lambda: f"{bridge.admin.message_count(rejected)} of 11 events dead-lettered")
    finally:
        process.send_signal(signal.SIGTERM)
        assert process.wait(30) == 0
    return bridge.admin.read_all(rejected)
