"""The inbound daemon end to end against the real RabbitMQ: nothing lost, nothing changed, clear reports."""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import random
import signal
import stat
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path
from typing import Any

import orjson
import pika
import pika.exceptions
import pytest

from bridge.dtn.definitions import DefinitionSet
from bridge.dtn.reader import FlowFileReader
from bridge.dtn.synthetic import synthetic_file
from bridge.events.manifest import MANIFEST_TYPE
from bridge.inbound.flowfile import check_file, file_events
from tests.conftest import AMQP_URL, EXAMPLES, REPO, sample, samples
from tests.e2e.conftest import Bridge
from tests.helpers import wait_until

VALID_SAMPLES = ["DTC5259515123502080915D0010", "ocdiff_D0155001_a", "OVOE1359", "OVOE1429"]


def expected_ids(paths: list[Path], reader: FlowFileReader) -> list[str]:
    """The event ids the bridge must publish for these files (parse is deterministic)."""
    ids = []
    for path in paths:
        checked = check_file(path, reader)
        ids += [event["id"] for event in file_events(path, reader, checked)]
    return ids


def corpus(folder: Path, definitions: DefinitionSet, files: int, instances: int, flow: str = "D0275001") -> list[Path]:
    """Generated valid files with distinct content."""
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for number in range(files):
        path = folder / f"{flow}_{number:04d}.usr"
        path.write_text("".join(synthetic_file(definitions[flow], 1000 + number, instances=instances,
                                               file_number=number + 1)))
        paths.append(path)
    return paths


def wait_for_broker(timeout: float = 60.0) -> None:
    """After a restart, wait until the broker really takes connections and declarations again."""
    def takes_connections() -> bool:
        try:
            connection = pika.BlockingConnection(pika.URLParameters(AMQP_URL))
            connection.channel().queue_declare("", exclusive=True)
            connection.close()
            return True
        except pika.exceptions.AMQPError:
            return False

    wait_until(takes_connections, timeout, "the broker takes no connections after its restart", interval=0.5)


def split(captured: list[tuple[Any, dict[str, Any]]]) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    events = [event for _props, event in captured if event["type"] != MANIFEST_TYPE]
    manifests = [event for _props, event in captured if event["type"] == MANIFEST_TYPE]
    return events, manifests


class TestPublishing:
    @pytest.mark.parametrize("workers", [2, 0], ids=["build-worker", "one-process"])
    def test_examples_samples_and_corpus(self, make_bridge: Any, run_service: Any, reader: FlowFileReader,
                                         tmp_path: Path, workers: int) -> None:
        """Every flow instance is published once, signed, with its id, routing key and a manifest per file."""
        bridge: Bridge = make_bridge(inbound={"workers": workers})
        files = sorted(EXAMPLES.glob("*.txt")) + samples(VALID_SAMPLES)
        files += corpus(tmp_path / "corpus", reader.definitions, files=20, instances=5)
        running = run_service(bridge)
        for path in files:
            bridge.drop(path)
        bridge.wait_settled(len(files))
        running.close()
        ids = expected_ids(files, reader)
        captured = bridge.captured(len(ids) + len(files))
        events, manifests = split(captured)
        assert sorted(event["id"] for event in events) == sorted(ids)
        assert len(manifests) == len(files) and bridge.quarantined() == []
        for props, event in captured:
            assert props.delivery_mode == 2 and props.content_type == "application/cloudevents+json"
            assert props.message_id == event["id"]
            bridge.trust.verify(event)
        by_sha = {hashlib.sha256(path.read_bytes()).hexdigest(): path for path in files}
        first_ids = {event["id"] for event in events if event["dtcindex"] == 1}
        for manifest in manifests:
            data = manifest["data"]
            assert data["sha256"] in by_sha and data["first_event_id"] in first_ids
            assert data["size"] == by_sha[data["sha256"]].stat().st_size
        kraken = next(event for event in events if event["type"] == "uk.dtc.D0010.v002" and event["dtcfrom"] == "UDMS")
        assert kraken["source"] == "urn:mpid:UDMS"

    def test_routing_keys(self, make_bridge: Any, run_service: Any) -> None:
        """Events route by flow and participants; manifests by file.received."""
        bridge: Bridge = make_bridge()
        readings = bridge.admin.probe_queue(bridge.topology.exchange, "inbound.D0010002.UDMS.*")
        manifests = bridge.admin.probe_queue(bridge.topology.exchange, "file.received.#")
        running = run_service(bridge)
        bridge.drop(sample("DTC5259515123502080915D0010"))
        bridge.drop(sample("ocdiff_D0155001_a"))
        bridge.wait_settled(2)
        running.close()
        assert len(bridge.admin.read_all(readings)) == 11
        assert len(bridge.admin.read_all(manifests)) == 2


class TestBadInput:
    def test_bad_files_quarantined_with_reports(self, make_bridge: Any, run_service: Any, tmp_path: Path) -> None:
        """Garbage, empty, binary, truncated and oversize files are quarantined with a report; nothing published."""
        bridge: Bridge = make_bridge(inbound={"max_file_bytes": 20_000})
        bad = tmp_path / "bad"
        bad.mkdir()
        kraken = sample("DTC5259515123502080915D0010").read_bytes()
        cases = {
            "garbage.usr": b"hello world\n",
            "empty.usr": b"",
            "binary.usr": bytes(range(256)) * 4,
            "truncated.usr": kraken[: len(kraken) // 2],
            "oversize.usr": kraken * 600,
            "excerpt.usr": sample("sureserve").read_bytes(),
        }
        for name, content in cases.items():
            (bad / name).write_bytes(content)
            bridge.drop(bad / name)
        running = run_service(bridge)
        bridge.wait_settled(len(cases))
        running.close()
        assert sorted(p.name for p in bridge.quarantined()) == sorted(cases)
        rules = {}
        for path in bridge.quarantined():
            report = json.loads(path.with_name(path.name + ".error.json").read_text())
            assert report["defects"] and report["sha256"] == hashlib.sha256(path.read_bytes()).hexdigest()
            rules[path.name] = report["defects"][0]["rule"]
        # binary.usr's first line (bytes 0-9) is UTF-8: its first defect is the missing header on line 1 (the
        # strict decoder, failing on the block it decoded ahead, used to report an encoding defect there)
        assert rules == {"garbage.usr": "header-missing", "empty.usr": "file-empty", "binary.usr": "header-missing",
                         "truncated.usr": "line-terminator", "oversize.usr": "max-file-bytes",
                         "excerpt.usr": "trailer-group-count"}
        assert bridge.captured() == []

    def test_half_written_file_waits(self, make_bridge: Any, run_service: Any) -> None:
        """A file written slowly in place is taken only once complete, and published once."""
        bridge: Bridge = make_bridge(watch={"stable_seconds": 1.0})
        running = run_service(bridge)
        content = sample("DTC5259515123502080915D0010").read_bytes()
        target = bridge.inbound / "slow.uff"
        with open(target, "wb") as stream:
            for start in range(0, len(content), 300):
                stream.write(content[start:start + 300])
                stream.flush()
                time.sleep(0.3)  # the scenario: a slow writer, each pause shorter than stable_seconds
        bridge.wait_settled(1)
        running.close()
        assert [p.name for p in bridge.archived()] == ["slow.uff"] and bridge.quarantined() == []
        events, manifests = split(bridge.captured(12))
        assert len(events) == 11 and len(manifests) == 1


IGLOO_WARNINGS = [  # igloo's D0379 sample uses made-up MPAN Cores (1234567891234, 2234567891235)
    {"rule": "mpan-check-digit", "line": 2, "group": "25B", "item": 1, "item_key": "mpan_core",
     "item_format": "NUM(13)", "message": "'1234567891234' fails the MPAN check digit: its last digit must be 6",
     "text": "D0379001 line 2 group 25B item 1 (mpan_core, NUM(13)): '1234567891234' fails the MPAN check digit: "
             "its last digit must be 6"},
    {"rule": "mpan-check-digit", "line": 52, "group": "25B", "item": 1, "item_key": "mpan_core",
     "item_format": "NUM(13)", "message": "'2234567891235' fails the MPAN check digit: its last digit must be 9",
     "text": "D0379001 line 52 group 25B item 1 (mpan_core, NUM(13)): '2234567891235' fails the MPAN check digit: "
             "its last digit must be 9"},
]


class TestNamedChecks:
    def test_error_quarantines_with_the_located_defect(self, make_bridge: Any, run_service: Any) -> None:
        """Under the default severity (error) a wrong MPAN check digit quarantines the file; its report locates
        each defect, and nothing is published."""
        igloo = sample("igloo-airflow")
        bridge: Bridge = make_bridge()
        running = run_service(bridge)
        bridge.drop(igloo)
        bridge.wait_settled(1)
        running.close()
        assert [path.name for path in bridge.quarantined()] == [igloo.name]
        quarantined = bridge.quarantined()[0]
        report = json.loads(quarantined.with_name(quarantined.name + ".error.json").read_text())
        assert report["defects"] == IGLOO_WARNINGS
        assert bridge.captured() == []

    def test_warn_publishes_with_the_defects_in_the_manifest(self, make_bridge: Any, run_service: Any) -> None:
        """Under warn the file is published and its manifest lists the defects; a clean file's manifest has no
        `warnings` at all (its bytes are as before)."""
        bridge: Bridge = make_bridge(checks={"mpan_check_digit": "warn"})
        running = run_service(bridge)
        bridge.drop(sample("igloo-airflow"))
        bridge.drop(EXAMPLES / "D0010002.txt")
        bridge.wait_settled(2)
        running.close()
        assert bridge.quarantined() == [] and len(bridge.archived()) == 2
        events, manifests = split(bridge.captured())
        assert len(events) == 2 + 2 and len(manifests) == 2
        by_flow = {manifest["data"]["flow"]: manifest for manifest in manifests}
        assert by_flow["D0379001"]["data"]["warnings"] == IGLOO_WARNINGS
        assert "warnings" not in by_flow["D0010002"]["data"]
        for manifest in manifests:
            bridge.trust.verify(manifest)


class TestDuplicates:
    def test_same_file_twice_is_skipped(self, make_bridge: Any, run_service: Any) -> None:
        """A file dropped again (under another name) is archived without publishing twice."""
        bridge: Bridge = make_bridge()
        running = run_service(bridge)
        bridge.drop(sample("DTC5259515123502080915D0010"), "first.uff")
        bridge.wait_settled(1)
        bridge.drop(sample("DTC5259515123502080915D0010"), "again.uff")
        bridge.wait_settled(2)
        running.close()
        assert sorted(p.name for p in bridge.archived()) == ["again.uff", "first.uff"]
        events, manifests = split(bridge.captured())
        assert len(events) == 11 and len(manifests) == 1

    def test_republish_keeps_ids(self, make_bridge: Any, run_service: Any) -> None:
        """With duplicates: republish, the second copy carries the very same event ids."""
        bridge: Bridge = make_bridge(inbound={"duplicates": "republish"})
        running = run_service(bridge)
        bridge.drop(sample("DTC5259515123502080915D0010"), "first.uff")
        bridge.wait_settled(1)
        bridge.drop(sample("DTC5259515123502080915D0010"), "again.uff")
        bridge.wait_settled(2)
        running.close()
        events, manifests = split(bridge.captured())
        counts = Counter(event["id"] for event in events)
        assert len(counts) == 11 and set(counts.values()) == {2}
        assert len({manifest["id"] for manifest in manifests}) == 1


class TestSurvival:
    def test_kill_9_and_restart(self, make_bridge: Any, reader: FlowFileReader, tmp_path: Path) -> None:
        """SIGKILL at random moments, restart: every instance published at least once, same ids, all archived."""
        bridge: Bridge = make_bridge(log={"level": "info"})
        files = corpus(tmp_path / "corpus", reader.definitions, files=8, instances=1500)  # ~0.5 s each
        for path in files:
            bridge.drop(path)
        rng = random.Random(7)
        kills_mid_file = 0
        for _ in range(5):
            process = bridge.start_process()
            bridge.wait_running(process)
            # a later round may find every file settled: its kill then comes between files (counted below)
            with contextlib.suppress(AssertionError):
                wait_until(lambda: any(bridge.folder("processing").iterdir()), 20, interval=0.01)
            time.sleep(rng.uniform(0.0, 0.1))  # the scenario: a kill at a random moment of the file
            kills_mid_file += any(bridge.folder("processing").iterdir())
            os.kill(process.pid, signal.SIGKILL)
            process.wait(10)
        assert kills_mid_file >= 3, "the test must kill the daemon while it holds a claimed file"
        process = bridge.start_process()
        bridge.wait_running(process)
        bridge.wait_settled(len(files), timeout=120)
        process.send_signal(signal.SIGTERM)
        assert process.wait(30) == 0
        ids = expected_ids(files, reader)
        events, manifests = split(bridge.captured())
        assert {event["id"] for event in events} == set(ids)  # nothing lost; duplicates carry the same ids
        for event in events:
            bridge.trust.verify(event)
        assert len({m["id"] for m in manifests}) == len(files)
        assert len(bridge.archived()) == len(files) and bridge.quarantined() == []
        assert list(bridge.folder("processing").iterdir()) == []
        assert (bridge.root / "daemon.log").read_text().count("file_resumed") >= kills_mid_file

    def test_broker_restart_mid_file(self, make_bridge: Any, run_service: Any, reader: FlowFileReader,
                                     tmp_path: Path) -> None:
        """`rabbitmqctl stop_app`/`start_app` while files flow: the daemon waits, reconnects, loses nothing."""
        bridge: Bridge = make_bridge()
        # Big enough to be still flowing when the broker stops: the inbound side now settles 200-instance files
        # faster than `rabbitmqctl stop_app` takes effect.
        files = corpus(tmp_path / "corpus", reader.definitions, files=10, instances=1500)
        running = run_service(bridge)
        for path in files:
            bridge.drop(path)
        bridge.wait_settled(1)
        subprocess.run(["rabbitmqctl", "stop_app"], check=True, capture_output=True, timeout=60)
        try:
            assert len(bridge.archived()) < len(files), "the broker must go down while files are still flowing"
            time.sleep(2.0)  # the scenario: the broker stays down a while, with the daemon retrying
        finally:  # never leave the broker down for the tests after this one
            subprocess.run(["rabbitmqctl", "start_app"], check=True, capture_output=True, timeout=120)
            subprocess.run(["rabbitmqctl", "await_startup"], check=True, capture_output=True, timeout=120)
        wait_for_broker()
        bridge.wait_settled(len(files), timeout=120)
        running.close()
        bridge.admin.reconnect()
        events, _ = split(bridge.captured())
        assert {event["id"] for event in events} == set(expected_ids(files, reader))
        assert len(bridge.archived()) == len(files)

    def test_sigterm_drains(self, make_bridge: Any) -> None:
        """SIGTERM stops the daemon within the timeout with exit code 0; the status says it stopped."""
        bridge: Bridge = make_bridge()
        process = bridge.start_process()
        bridge.wait_running(process)
        status = bridge.folder("state") / "status.json"
        bridge.drop(sample("DTC5259515123502080915D0010"))
        bridge.wait_settled(1)
        process.send_signal(signal.SIGTERM)
        assert process.wait(30) == 0
        assert orjson.loads(status.read_bytes())["state"] == "stopped"


class TestShadowMode:
    def test_shadow_publishes_nothing_and_leaves_files(self, make_bridge: Any, run_service: Any) -> None:
        """Shadow mode checks and reports every file, publishes nothing and leaves the gateway's folder alone."""
        bridge: Bridge = make_bridge(inbound={"shadow": True})
        good = bridge.drop(sample("DTC5259515123502080915D0010"))
        bad = bridge.drop(sample("sureserve"))
        running = run_service(bridge)
        bridge.wait_settled(2)
        time.sleep(1.5)  # the scenario: a rescan or two pass (no event to wait for); nothing is taken twice
        running.close()
        assert good.exists() and bad.exists()
        assert len(bridge.archived()) == 1 and len(bridge.quarantined()) == 1
        assert bridge.captured() == []


class TestReload:
    def test_a_reload_between_files_strands_none(self, make_bridge: Any, definitions: DefinitionSet,
                                                 tmp_path: Path) -> None:
        """A SIGHUP while files flow: the file claimed ahead (checked while the one before it published) is settled
        after the reload, with the new pipeline, not left claimed until the next start."""
        bridge: Bridge = make_bridge()
        process = bridge.start_process()
        bridge.wait_running(process)
        files = corpus(tmp_path / "corpus", definitions, files=6, instances=1500)
        for path in files:
            bridge.drop(path)
        wait_until(lambda: bool(bridge.archived()), 60, "no file archived")
        process.send_signal(signal.SIGHUP)
        bridge.wait_settled(len(files), timeout=180)
        process.send_signal(signal.SIGTERM)
        assert process.wait(30) == 0
        assert sorted(p.name for p in bridge.archived()) == sorted(p.name for p in files)
        assert not list(bridge.folder("processing").iterdir())
        assert "config_reloaded" in (bridge.root / "daemon.log").read_text()

    def test_sighup_reloads_and_refuses_bad_config(self, make_bridge: Any) -> None:
        """SIGHUP applies a new watched folder; a broken config is refused and the running one stays."""
        bridge: Bridge = make_bridge()
        process = bridge.start_process()
        bridge.wait_running(process)
        good = bridge.config_path.read_text()
        bridge.config_path.write_text(good.replace('"broker"', '"broker', 1))  # not YAML any more
        process.send_signal(signal.SIGHUP)
        wait_until(lambda: "reload_refused" in (bridge.root / "daemon.log").read_text(), 20, "not refused")
        bridge.drop(sample("DTC5259515123502080915D0010"), "before.uff")
        bridge.wait_settled(1)
        config = json.loads(good)
        config["watch"]["inbound"] = "var/dtn/inbound2"
        bridge.config_path.write_text(json.dumps(config))
        (bridge.root / "var" / "dtn" / "inbound2").mkdir()
        process.send_signal(signal.SIGHUP)
        wait_until(lambda: "config_reloaded" in (bridge.root / "daemon.log").read_text(), 20, "not reloaded")
        target = bridge.root / "var" / "dtn" / "inbound2" / "after.uff"
        target.write_bytes(sample("ocdiff_D0155001_a").read_bytes())
        bridge.wait_settled(2)
        process.send_signal(signal.SIGTERM)
        assert process.wait(30) == 0
        log = (bridge.root / "daemon.log").read_text()
        assert log.count("reload_refused") == 1 and log.count("config_reloaded") == 1
        assert sorted(p.name for p in bridge.archived()) == ["after.uff", "before.uff"]


class TestGovernance:
    def test_rules_applied_in_flight(self, make_bridge: Any, run_service: Any, tmp_path: Path) -> None:
        """Addressee enforced, test data under its own prefix, minimised copies signed and marked."""
        bridge: Bridge = make_bridge(participant={"id": "MRCY"}, rules={
            "addressee": {"enforce": True},
            "subscribers": [{"name": "readings", "routing_key_prefix": "minimised.readings", "flows": ["D0010"],
                             "mask": ["mpan_cores.meter_reading_types.meter_id"]}]})
        kraken = sample("DTC5259515123502080915D0010")
        test_copy = tmp_path / "test.uff"
        test_copy.write_text(kraken.read_text().replace("|OPER|", "|TR01|").replace("0000475656", "0000475657"))
        running = run_service(bridge)
        bridge.drop(kraken)
        bridge.drop(test_copy)
        bridge.drop(sample("ocdiff_D0155001_a"))  # addressed to OESL, not to us
        bridge.wait_settled(3)
        running.close()
        [refused] = bridge.quarantined()
        report = json.loads(refused.with_name(refused.name + ".error.json").read_text())
        assert report["defects"][0]["rule"] == "addressee" and "governance rule addressee" in report["reason"]
        captured = bridge.captured()
        routing = Counter(event.get("dtcroute", "full") for _props, event in captured)
        assert routing == {"full": 11 + 1 + 11 + 1, "readings": 11 + 11}
        masked = [event for _props, event in captured if event.get("dtcroute") == "readings"]
        assert all(event["data"]["mpan_cores"]["meter_reading_types"][0]["meter_id"] == "***" for event in masked)
        for _props, event in captured:
            bridge.trust.verify(event)
        test_events = [event for _props, event in captured if event.get("dtctestflag") == "TR01"]
        assert test_events and all(event["dtcfileid"] == "0000475657" for event in test_events)

    def test_test_data_routing_keys(self, make_bridge: Any, run_service: Any, tmp_path: Path) -> None:
        """A TR01 file's events and manifest never take a production routing key."""
        bridge: Bridge = make_bridge()
        production = bridge.admin.probe_queue(bridge.topology.exchange, "inbound.#")
        test = bridge.admin.probe_queue(bridge.topology.exchange, "test.#")
        test_copy = tmp_path / "test.uff"
        test_copy.write_text(sample("DTC5259515123502080915D0010").read_text().replace("|OPER|", "|TR01|"))
        running = run_service(bridge)
        bridge.drop(test_copy)
        bridge.wait_settled(1)
        running.close()
        assert bridge.admin.message_count(production) == 0
        keys = {method.routing_key for method, _p, _b in bridge.admin.read_all(test)}
        assert keys == {"test.inbound.D0010002.UDMS.MRCY", "test.file.received.D0010002.UDMS.MRCY"}


class TestHostileEntries:
    def test_hostile_entries_set_aside_and_honest_files_after_them_published(
            self, make_bridge: Any, definitions: DefinitionSet, reader: FlowFileReader, tmp_path: Path) -> None:
        """Issue 14, through the real daemon process and broker: a 240-byte name and a name that is not UTF-8 (both
        used to stop the daemon at every start), a hard link to a 0600 file elsewhere (it was chmodded to 0640), a
        symbolic link, a bad `X.error.json` then a bad `X` (X's report replaced the first original), an endless line,
        an undecodable byte on line 3 and a defect quoting a value: the daemon keeps running, sets each aside or
        skips it with a reason, changes nothing outside its folders, keeps no quoted value in its ledger, and
        publishes the honest files dropped after them."""
        bridge: Bridge = make_bridge(log={"level": "info"})
        outside = tmp_path / "outside"
        honest = corpus(tmp_path / "honest", definitions, 4, instances=3)
        outside.mkdir()
        secret = outside / "secret.usr"
        secret.write_bytes(honest[0].read_bytes())
        secret.chmod(0o600)
        kraken = sample("DTC5259515123502080915D0010").read_bytes()
        d0010 = (EXAMPLES / "D0010002.txt").read_bytes()
        hostile: dict[bytes, bytes] = {
            b"L" * 240: honest[0].read_bytes(),  # an honest file under a hostile name: published
            b"D0275\xff\x01.usr": honest[1].read_bytes(),
            b"X.error.json": b"first bad original\n",
            b"X": b"second bad original\n",
            b"endless.usr": kraken[:200] + b"9" * (2 << 20),
            b"latin1.usr": b"\n".join(line + b"\xff" if number == 2 else line
                                      for number, line in enumerate(d0010.split(b"\n"))),
            b"quoted.usr": d0010.replace(b"|3897788.8|", b"|SECRET42x|", 1),
        }
        process = bridge.start_process()
        bridge.wait_running(process)
        inbound = os.fsencode(bridge.inbound)
        staging = os.fsencode(tmp_path)
        for name, content in hostile.items():  # written beside, then renamed in, as a gateway does
            with open(staging + b"/staged", "wb") as out:
                out.write(content)
            os.rename(staging + b"/staged", inbound + b"/" + name)
        os.link(secret, bridge.inbound / "linked.usr")
        os.symlink(secret, bridge.inbound / "symlinked.usr")
        for path in honest[2:]:
            bridge.drop(path)
        quarantine = bridge.folder("quarantine")
        originals = {"X.error.json", "X.1", "endless.usr", "latin1.usr", "quoted.usr", "linked.usr"}

        def settled() -> bool:
            assert process.poll() is None, f"the daemon exited with {process.returncode}"
            return len(bridge.archived()) == 4 and originals <= set(os.listdir(quarantine))

        wait_until(settled, 60, lambda: f"{len(bridge.archived())} archived; {os.listdir(quarantine)}")
        assert process.poll() is None
        # the honest files, the two under hostile names included, published: every event and a manifest each
        ids = expected_ids(honest, reader)
        events, manifests = split(bridge.captured(expected=len(ids) + 4))
        assert sorted(event["id"] for event in events) == sorted(ids) and len(manifests) == 4
        # set aside, each beside its report, none replacing another
        reports = {name: json.loads((quarantine / f"{name}.error.json").read_text()) for name in originals}
        assert (quarantine / "X.error.json").read_bytes() == b"first bad original\n"
        assert (quarantine / "X.1").read_bytes() == b"second bad original\n"
        assert {name: report["defects"][0]["rule"] for name, report in reports.items()} == {
            "X.error.json": "header-missing", "X.1": "header-missing", "endless.usr": "line-too-long",
            "latin1.usr": "encoding", "quoted.usr": "item-format", "linked.usr": "unsafe-file"}
        assert reports["latin1.usr"]["defects"][0]["line"] == 3
        assert all(len(json.dumps(report)) < 10_000 for report in reports.values())
        # nothing outside changed: the hard link's file keeps its mode; the symbolic link is left where it is
        assert stat.S_IMODE(secret.stat().st_mode) == 0o600 and secret.read_bytes() == honest[0].read_bytes()
        assert (bridge.inbound / "symlinked.usr").is_symlink() and os.listdir(outside) == ["secret.usr"]
        # the ledger is the owner's only, and keeps locations and rules, not the quoted value
        ledger = bridge.config.state.ledger_path
        assert stat.S_IMODE(ledger.stat().st_mode) == 0o600
        status = subprocess.run([sys.executable, "-m", "bridge", "status", "--config", str(bridge.config_path)],
                                capture_output=True, text=True, timeout=60, cwd=REPO, check=False)
        assert status.returncode == 0 and "quoted.usr" in status.stdout and "item-format" in status.stdout
        assert "SECRET42x" not in status.stdout
        process.send_signal(signal.SIGTERM)
        assert process.wait(30) == 0
        assert not [path for path in ledger.parent.glob(ledger.name + "*") if b"SECRET42x" in path.read_bytes()]
        log = (bridge.root / "daemon.log").read_text()
        assert '"file_skipped"' in log and "symlinked.usr" in log and "SECRET42x" not in log
