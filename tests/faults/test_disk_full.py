"""A full disk under the running daemon: nothing lost, nothing half-written visible, clear reports, and it resumes
by itself once space is freed.

The archive (and the outbound folder) are put on a small tmpfs mounted for the test (the tests run as root; a mount
that is refused fails the test with the reason). Inbound and processing stay on the ordinary filesystem, since claims
are renames; the spool archives across filesystems by a fsynced copy, which is what fills up.
"""

from __future__ import annotations

import errno
import json
import os
import signal
import subprocess
from collections import Counter
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import structlog.testing

from bridge.dtn.reader import FlowFileReader
from bridge.dtn.synthetic import synthetic_file
from bridge.events.manifest import MANIFEST_TYPE
from bridge.inbound.flowfile import check_file, file_events
from tests.conftest import EXAMPLES, sample, samples
from tests.e2e.conftest import Bridge
from tests.helpers import wait_until

SAMPLES = ["DTC5259515123502080915D0010", "ocdiff_D0155001_a", "OVOE1359", "OVOE1429"]


@pytest.fixture
def small_fs() -> Iterator[Callable[[Path, str], Path]]:
    """Mount a tmpfs of the given size over a folder (unmounted after the test, whatever happened)."""
    mounted: list[Path] = []

    def mount(folder: Path, size: str) -> Path:
        folder.mkdir(parents=True, exist_ok=True)
        done = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size},mode=0750", "tmpfs", str(folder)],
                              capture_output=True, text=True, check=False)
        if done.returncode != 0:
            pytest.fail(f"cannot mount a tmpfs on {folder} (the test needs root): {done.stderr.strip()}")
        mounted.append(folder)
        return folder

    yield mount
    for folder in reversed(mounted):
        if subprocess.run(["umount", str(folder)], capture_output=True, check=False).returncode != 0:
            subprocess.run(["umount", "-l", str(folder)], check=True)


def fill(folder: Path) -> Path:
    """Write a filler file until the filesystem has no space left."""
    filler = folder / "filler.bin"
    fd = os.open(filler, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        for size in (1 << 20, 64 << 10, 4096, 1):  # down to the last byte
            try:
                while True:
                    os.write(fd, b"\0" * size)
            except OSError as exc:
                assert exc.errno == errno.ENOSPC, exc
    finally:
        os.close(fd)
    return filler


def every_file(folder: Path) -> list[Path]:
    """All files under `folder`, hidden temp and staging files included."""
    return sorted(path for path in folder.rglob("*") if path.is_file())


def expected_ids(paths: list[Path], reader: FlowFileReader) -> set[str]:
    ids: set[str] = set()
    for path in paths:
        checked = check_file(path, reader)
        assert checked.ok
        ids.update(event["id"] for event in file_events(path, reader, checked))
    return ids


def valid_files(folder: Path, reader: FlowFileReader) -> list[Path]:
    folder.mkdir()
    files = []
    for name in SAMPLES:
        path = folder / sample(name).name
        path.write_bytes(sample(name).read_bytes())
        files.append(path)
    for number, flow in enumerate(["D0275001", "D0036001", "D0010002"]):
        path = folder / f"{flow}_{number}.usr"
        path.write_text("".join(synthetic_file(reader.definitions[flow], 500 + number, instances=40)))
        files.append(path)
    return files


class TestArchiveFull:
    def test_full_archive_holds_files_then_resumes(self, make_bridge: Any, run_service: Any, small_fs: Any,
                                                   reader: FlowFileReader, tmp_path: Path) -> None:
        """Archive disk full: the file in hand stays claimed (with the next one, claimed and checked ahead), the
        rest wait in inbound, the archive shows nothing half-written, status and log name the storage error; freed,
        everything is archived intact and every event is published (a retried file republishes the same ids)."""
        bridge: Bridge = make_bridge(log={"level": "info"})
        archive = small_fs(bridge.folder("archive"), "2m")
        filler = fill(archive)
        files = valid_files(tmp_path / "files", reader)
        names = {path.name for path in files}
        status = bridge.folder("state") / "status.json"
        with structlog.testing.capture_logs() as logs:
            running = run_service(bridge)
            for path in files:
                bridge.drop(path)

            def storage_retries() -> list[dict[str, Any]]:
                return [entry for entry in list(logs)
                        if entry.get("event") == "file_retry" and entry.get("cause") == "storage"]

            wait_until(lambda: len(storage_retries()) >= 3, 30, "three storage retries")
            claimed = [path for path in bridge.folder("processing").iterdir() if not path.name.startswith(".")]
            waiting = [path for path in bridge.inbound.iterdir() if not path.name.startswith(".")]
            assert 1 <= len(claimed) <= 2, claimed  # the file in hand, and the next one
            assert {path.read_bytes() for path in claimed} <= {path.read_bytes() for path in files}, \
                "a claimed file changed"
            assert len(waiting) == len(files) - len(claimed) and {p.name for p in waiting} < names
            assert every_file(archive) == [filler], "something (half-)written is visible in the full archive"
            assert bridge.quarantined() == [], "a full disk must not quarantine a good file"
            assert all("No space left on device" in entry["error"] for entry in storage_retries()), \
                [entry["error"] for entry in storage_retries()]
            reported = json.loads(status.read_text())
            assert "No space left on device" in reported["last_error"] and reported["state"] == "running"
            assert running.thread.is_alive()

            filler.unlink()
            bridge.wait_settled(len(files), timeout=90)
            running.close()
        archived = bridge.archived()
        assert {path.name for path in archived} == names
        originals = {path.name: path.read_bytes() for path in files}
        for path in archived:
            assert path.read_bytes() == originals[path.name], f"{path.name} changed in the archive"
        assert every_file(archive) == archived, "a hidden temp or copy file was left in the archive"
        assert list(bridge.folder("processing").iterdir()) == [] and bridge.quarantined() == []
        captured = bridge.captured()
        events = [event for _props, event in captured if event["type"] != MANIFEST_TYPE]
        manifests = [event for _props, event in captured if event["type"] == MANIFEST_TYPE]
        assert {event["id"] for event in events} == expected_ids(files, reader)
        assert len({manifest["id"] for manifest in manifests}) == len(files)
        for props, event in captured:
            assert props.message_id == event["id"]
            bridge.trust.verify(event)  # a republished event is the same signed event
        repeated = Counter(event["id"] for event in events)
        print(f"{len(storage_retries())} storage retries; {sum(n - 1 for n in repeated.values())} events republished")


class TestOutboundFull:
    def test_full_outbound_folder_holds_events_then_resumes(self, make_bridge: Any, small_fs: Any,
                                                            tmp_path: Path) -> None:
        """Outbound folder full: no file (and no half-written temp file) appears, nothing is acked or dead-lettered,
        the log names the storage error; freed, every file is written once, byte for byte."""
        bridge: Bridge = make_bridge(outbound={"prefetch": 1000, "batch_seconds": 1}, log={"level": "info"})
        outbound = small_fs(bridge.outbound_folder, "1m")
        filler = fill(outbound)
        files = sorted(EXAMPLES.glob("*.txt")) + samples(SAMPLES)
        process = bridge.run_files(files)
        routed = bridge.route_back()
        log = bridge.root / "daemon.log"

        def interruptions() -> list[dict[str, Any]]:
            lines = [json.loads(line) for line in log.read_text().splitlines() if line.startswith("{")]
            return [entry for entry in lines if entry.get("event") == "outbound_interrupted"]

        wait_until(lambda: len(interruptions()) >= 2, 60, "two outbound storage interruptions")
        assert all("No space left on device" in entry["error"] for entry in interruptions())
        status = bridge.folder("state") / "status.json"
        assert "No space left on device" in (json.loads(status.read_text()).get("outbound_error") or "")
        assert every_file(outbound) == [filler], "something (half-)written is visible in the full outbound folder"
        assert bridge.admin.message_count(bridge.topology.outbound_rejected_queue or "") == 0
        assert process.poll() is None

        filler.unlink()
        wait_until(lambda: len(bridge.outbound_files()) >= len(files), 90, "every file written once space returned")
        wait_until(lambda: json.loads(status.read_text()).get("outbound_error") is None, 30, "the status to clear")
        process.send_signal(signal.SIGTERM)
        assert process.wait(30) == 0
        bridge.assert_reproduced(files)
        assert every_file(outbound) == bridge.outbound_files(), "a temp file was left in the outbound folder"
        assert bridge.admin.message_count(bridge.topology.outbound_rejected_queue or "") == 0
        assert bridge.admin.message_count(bridge.topology.outbound_queue or "") == 0, "an event was never acked"
        print(f"{routed} events routed back; {len(interruptions())} outbound storage interruptions")
