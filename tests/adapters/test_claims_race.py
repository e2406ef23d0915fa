"""Two daemons of a pair claiming from one inbound folder at the same moment, each into its own processing folder:
every file is claimed by exactly one of them (a claim is one atomic rename), none lost. Real processes."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

from bridge.adapters.spool import Spool, claims
from tests.conftest import REPO

FILES = 300


def claimer(inbound: Path, processing: Path, seed: int) -> subprocess.Popen[str]:
    """A process that, on a line of stdin, claims every file it lists in `inbound` (in its own random order) and
    prints the original name of each one it got."""
    return subprocess.Popen([sys.executable, "-c", textwrap.dedent(f"""
        import os, random, sys
        from pathlib import Path
        from bridge.adapters.spool import Spool
        inbound = Path({str(inbound)!r})
        spool = Spool(Path({str(processing)!r}), inbound.parent / "archive", inbound.parent / "quarantine")
        names = sorted(os.listdir(inbound))
        random.Random({seed}).shuffle(names)
        print("ready", flush=True)
        sys.stdin.readline()
        for name in names:
            claim = spool.claim(inbound / name)
            if claim is not None:
                print(claim.original_name)
    """)], cwd=REPO, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def test_two_claimers_racing_each_file_claimed_once(tmp_path: Path) -> None:
    inbound = tmp_path / "inbound"
    inbound.mkdir()
    for number in range(FILES):
        (inbound / f"D0010002_{number:04d}.usr").write_bytes(b"%d" % number)
    processing = [tmp_path / "processing-a", tmp_path / "processing-b"]
    for folder in processing:
        folder.mkdir()
    processes = [claimer(inbound, folder, seed) for seed, folder in enumerate(processing)]
    for process in processes:
        assert process.stdout is not None and process.stdout.readline() == "ready\n"
    for process in processes:  # both go at once
        assert process.stdin is not None
        process.stdin.write("go\n")
        process.stdin.flush()
    claimed = []
    for process in processes:
        out, err = process.communicate(timeout=120)
        assert process.returncode == 0, err
        claimed.append(out.split())
    names = sorted(f"D0010002_{number:04d}.usr" for number in range(FILES))
    assert sorted(claimed[0] + claimed[1]) == names  # each exactly once
    assert claimed[0] and claimed[1], "the race never happened: one process claimed everything"
    assert os.listdir(inbound) == []
    for folder, got in zip(processing, claimed, strict=True):
        kept = sorted(name.split("-", 2)[2] for name in os.listdir(folder))
        assert kept == sorted(got)  # what it reported is what its processing folder holds
        for name in os.listdir(folder):
            assert (folder / name).read_bytes() == b"%d" % int(name.rsplit("_", 1)[1].split(".")[0])


def test_a_rename_answered_enoent_that_did_happen_is_our_claim(tmp_path: Path, monkeypatch: Any) -> None:
    """Over NFS a retransmitted rename can report ENOENT for the rename that succeeded: the claim is still ours
    (the target name is unique to this process), not a file lost in processing."""
    inbound, processing = tmp_path / "inbound", tmp_path / "processing"
    inbound.mkdir()
    processing.mkdir()
    (inbound / "a.usr").write_bytes(b"abc")
    spool = Spool(processing, tmp_path / "archive", tmp_path / "quarantine")
    real_rename = os.rename

    def retransmitted(src: Any, dst: Any) -> None:
        real_rename(src, dst)
        raise FileNotFoundError(2, "No such file or directory")

    monkeypatch.setattr(claims.os, "rename", retransmitted)
    claim = spool.claim(inbound / "a.usr")
    assert claim is not None and claim.path.read_bytes() == b"abc" and claim.original_name == "a.usr"
    assert spool.claim(inbound / "b.usr") is None  # a file really gone is still None
