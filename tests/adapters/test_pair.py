"""The state an active/standby pair shares (bridge/adapters/pair.py): identifiers never handed out twice between
processes, each daemon told what the other wrote, and a writer killed holding the lock settled by the outbound
folder. Real processes and SIGKILL where a lock's release at death is the point."""

from __future__ import annotations

import hashlib
import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from bridge.adapters.pair import RETENTION_SECONDS, SharedOutbound
from bridge.errors import StorageError
from tests.conftest import REPO


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def child(script: str) -> subprocess.Popen[str]:
    """A Python process running `script` (with the repository importable)."""
    return subprocess.Popen([sys.executable, "-c", textwrap.dedent(script)], cwd=REPO, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)


@pytest.fixture
def folders(tmp_path: Path) -> tuple[Path, Path]:
    shared, outbound = tmp_path / "shared", tmp_path / "outbound"
    outbound.mkdir()
    return shared, outbound


def write(shared: SharedOutbound, name: str, data: bytes, events: list[tuple[str, str]]) -> None:
    """What the writer does for one file: record it pending, link it, mark it done."""
    with shared.session() as session:
        number = session.begin(name, f".{name}.abc.tmp", sha(data), events)
        (shared.outbound / name).write_bytes(data)
        session.finish(number)


def test_identifiers_are_never_handed_out_twice_between_processes(folders: tuple[Path, Path]) -> None:
    shared, outbound = folders
    script = f"""
        from pathlib import Path
        from bridge.adapters.pair import SharedOutbound
        shared = SharedOutbound(Path({str(shared)!r}), Path({str(outbound)!r}))
        for _ in range(40):
            with shared.session() as session:
                number = session.next_identifier("SYNA", 1)
                session.drop(session.begin(f"F{{number}}.usr", f".F{{number}}.usr.tmp", "0" * 64, []))  # saved by begin
                print(number, flush=True)
    """
    processes = [child(script) for _ in range(4)]
    numbers: list[int] = []
    for process in processes:
        out, err = process.communicate(timeout=120)
        assert process.returncode == 0, err
        numbers += [int(line) for line in out.split()]
    assert sorted(numbers) == list(range(1, 161))


def test_next_identifier_goes_on_from_the_highest_of_both_counters(folders: tuple[Path, Path]) -> None:
    shared = SharedOutbound(*folders)
    with shared.session() as session:
        assert session.next_identifier("SYNA", 1) == 1
        assert session.next_identifier("SYNA", 7) == 7  # a daemon whose own counter was ahead (it ran alone)
        assert session.next_identifier("SYNA", 3) == 8
        assert session.next_identifier("SYNB", 1) == 1  # a counter per sender
        session.drop(session.begin("F.usr", ".F.usr.tmp", "0" * 64, []))  # a file recorded: the numbers are saved
    with SharedOutbound(*folders).session() as session:
        assert session.next_identifier("SYNA", 1) == 9  # durable
        assert session.next_identifier("SYNB", 1) == 2
    with SharedOutbound(*folders).session() as session:
        assert session.next_identifier("SYNA", 1) == 9  # a number no file took may be taken again


def test_each_daemon_hears_of_the_files_the_other_wrote_once(folders: tuple[Path, Path]) -> None:
    a, b = SharedOutbound(*folders), SharedOutbound(*folders)
    write(a, "F1.usr", b"one", [("S", "e1"), ("S", "e2")])
    with a.session() as session:
        assert session.news() == []  # its own
    with b.session() as session:
        news = session.news()
    assert [(f.name, f.sha256, f.events) for f in news] == [("F1.usr", sha(b"one"), (("S", "e1"), ("S", "e2")))]
    write(a, "F2.usr", b"two", [("S", "e3")])
    write(b, "F3.usr", b"three", [("S", "e4")])
    with b.session() as session:
        assert [f.name for f in session.news()] == ["F2.usr"]
    with a.session() as session:
        assert [f.name for f in session.news()] == ["F3.usr"]
    with SharedOutbound(*folders).session() as session:  # a daemon starting: every record there is
        assert [f.name for f in session.news()] == ["F1.usr", "F2.usr", "F3.usr"]


@pytest.mark.parametrize("linked", [False, True], ids=["killed-before-the-link", "killed-after-the-link"])
def test_a_writer_killed_holding_the_lock(folders: tuple[Path, Path], linked: bool) -> None:
    """SIGKILL between recording a file and marking it done: the lock dies with the writer; the next one to take
    it keeps the record when the final name holds the recorded bytes, else removes it and the temporary file."""
    shared, outbound = folders
    process = child(f"""
        import os, signal
        from pathlib import Path
        from bridge.adapters.pair import SharedOutbound
        shared = SharedOutbound(Path({str(shared)!r}), Path({str(outbound)!r}))
        with shared.session() as session:
            session.next_identifier("SYNA", 1)
            session.begin("F1.usr", ".F1.usr.abc.tmp", {sha(b"data")!r}, [("S", "e1")])
            tmp = Path({str(outbound)!r}) / ".F1.usr.abc.tmp"
            tmp.write_bytes(b"data")
            if {linked!r}:
                os.link(tmp, tmp.with_name("F1.usr"))
            os.kill(os.getpid(), signal.SIGKILL)
    """)
    assert process.wait(60) == -signal.SIGKILL, process.stderr.read() if process.stderr else ""
    standby = SharedOutbound(*folders)
    with standby.session() as session:  # would hang if the dead writer's lock outlived it
        news = session.news()
        assert session.next_identifier("SYNA", 1) == 2  # its identifier stays taken
    assert [f.name for f in news] == (["F1.usr"] if linked else [])
    records = sorted(os.listdir(shared / "written"))
    assert records == (["000000000001.json"] if linked else [])
    assert not (outbound / ".F1.usr.abc.tmp").exists()


def test_a_failed_write_of_this_daemon_is_settled_by_its_next_session(folders: tuple[Path, Path]) -> None:
    shared = SharedOutbound(*folders)
    with shared.session() as session:
        session.begin("F1.usr", ".F1.usr.abc.tmp", sha(b"data"), [("S", "e1")])  # then the link failed
    with shared.session() as session:
        assert session.news() == []
    assert os.listdir(folders[0] / "written") == []


def test_records_older_than_the_retention_are_removed(folders: tuple[Path, Path]) -> None:
    now = [1_000_000_000.0]
    a = SharedOutbound(*folders, clock=lambda: now[0])
    write(a, "F1.usr", b"one", [("S", "e1")])
    record = folders[0] / "written" / "000000000001.json"
    os.utime(record, (now[0], now[0]))
    now[0] += RETENTION_SECONDS + 1
    write(a, "F2.usr", b"two", [("S", "e2")])
    with SharedOutbound(*folders, clock=lambda: now[0]).session() as session:
        assert [f.name for f in session.news()] == ["F2.usr"]
    assert not record.exists()


def test_a_record_this_bridge_did_not_write_is_a_storage_error(folders: tuple[Path, Path]) -> None:
    shared, _ = folders
    (shared / "written").mkdir(parents=True)
    (shared / "written" / "000000000001.json").write_text('{"name": "../etc/passwd", "sha256": "x", "events": []}')
    with SharedOutbound(*folders).session() as session, pytest.raises(StorageError, match="not one this bridge"):
        session.news()
