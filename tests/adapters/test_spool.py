"""Tests of bridge.adapters.spool: claiming, crash resume, archive, quarantine and atomic writes."""

from __future__ import annotations

import errno
import json
import os
import stat
import threading
from collections.abc import Iterator
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import pytest

from bridge.adapters.spool import Claim, Spool, write_atomic
from bridge.errors import StorageError


@pytest.fixture
def inbound(tmp_path: Path) -> Path:
    folder = tmp_path / "inbound"
    folder.mkdir()
    return folder


@pytest.fixture
def spool(tmp_path: Path) -> Spool:
    for name in ("processing", "archive", "quarantine"):
        (tmp_path / name).mkdir()
    return Spool(tmp_path / "processing", tmp_path / "archive", tmp_path / "quarantine")


def drop(folder: Path, name: str, data: bytes = b"ZHV|x|\n") -> Path:
    path = folder / name
    path.write_bytes(data)
    return path


class TestClaim:
    def test_claim_moves_into_processing(self, spool: Spool, inbound: Path) -> None:
        """A claim renames the file into processing/ and keeps its original name."""
        src = drop(inbound, "D0010002.usr", b"abc")
        claim = spool.claim(src)
        assert claim is not None
        assert not src.exists()
        assert claim.path.parent == spool.processing and claim.path.read_bytes() == b"abc"
        assert claim.original_name == "D0010002.usr" and claim.path.name.endswith("-D0010002.usr")
        assert abs(claim.claimed_at - datetime.now(UTC)) < timedelta(seconds=5)

    def test_vanished_file_returns_none(self, spool: Spool, inbound: Path) -> None:
        """Claiming a file that is gone (another instance took it) returns None."""
        assert spool.claim(inbound / "gone.usr") is None

    def test_second_claim_of_same_file_returns_none(self, spool: Spool, inbound: Path) -> None:
        """Only the first claim of a file succeeds."""
        src = drop(inbound, "a.usr")
        assert spool.claim(src) is not None
        assert spool.claim(src) is None

    def test_same_name_claimed_twice_gets_two_names(self, spool: Spool, inbound: Path) -> None:
        """A file dropped again under the same name does not overwrite the first claim."""
        first = spool.claim(drop(inbound, "a.usr", b"1"))
        second = spool.claim(drop(inbound, "a.usr", b"2"))
        assert first and second and first.path != second.path
        assert first.path.read_bytes() == b"1" and second.path.read_bytes() == b"2"

    def test_directory_is_not_claimed(self, spool: Spool, inbound: Path) -> None:
        """A folder in inbound (one swapped in after the watcher's check) is left where it is, and the daemon goes
        on: no error."""
        (inbound / "sub").mkdir()
        assert spool.claim(inbound / "sub") is None
        assert (inbound / "sub").is_dir()

    def test_missing_processing_folder_is_storage_error(self, tmp_path: Path, inbound: Path) -> None:
        """A missing processing folder is an error, not a silent 'vanished'."""
        broken = Spool(tmp_path / "nope", tmp_path / "a", tmp_path / "q")
        with pytest.raises(StorageError):
            broken.claim(drop(inbound, "a.usr"))
        assert (inbound / "a.usr").exists()

    def test_two_spools_race_each_file_claimed_once(self, tmp_path: Path, inbound: Path) -> None:
        """Two instances sharing inbound, claiming concurrently from threads: every file is taken exactly once."""
        for name in ("processing", "archive", "quarantine"):
            (tmp_path / name).mkdir()
        spools = [
            Spool(tmp_path / "processing", tmp_path / "archive", tmp_path / "quarantine") for _ in range(2)
        ]
        names = [f"F{i:04d}.usr" for i in range(300)]
        for name in names:
            drop(inbound, name, name.encode())
        won: list[list[Claim]] = [[] for _ in range(4)]
        barrier = threading.Barrier(4)

        def worker(n: int) -> None:
            barrier.wait()
            order = names if n % 2 else list(reversed(names))
            for name in order:
                claim = spools[n % 2].claim(inbound / name)
                if claim is not None:
                    won[n].append(claim)

        threads = [threading.Thread(target=worker, args=(n,)) for n in range(4)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(timeout=30)
        claimed = [c.original_name for claims in won for c in claims]
        assert sorted(claimed) == names  # each exactly once
        assert len(os.listdir(tmp_path / "processing")) == len(names)
        assert not os.listdir(inbound)
        for claims in won:
            for claim in claims:
                assert claim.path.read_bytes() == claim.original_name.encode()


class TestPendingClaims:
    def test_resume_in_claim_order(self, spool: Spool, inbound: Path) -> None:
        """After a 'crash', a new Spool lists the claims left in processing in the order they were claimed."""
        names = ["c.usr", "a.usr", "b.usr", "a.usr"]
        claims = [spool.claim(drop(inbound, n)) for n in names]
        restarted = Spool(spool.processing, spool.archive_dir, spool.quarantine_dir)
        pending = restarted.pending_claims()
        assert [c.path for c in pending] == [c.path for c in claims if c]
        assert [c.original_name for c in pending] == names
        assert pending == claims

    def test_skips_temp_files_and_folders(self, spool: Spool, inbound: Path) -> None:
        """Dot-prefixed temp files and sub-folders in processing are not claims."""
        spool.claim(drop(inbound, "a.usr"))
        (spool.processing / ".x.tmp").write_bytes(b"")
        (spool.processing / "sub").mkdir()
        assert [c.original_name for c in spool.pending_claims()] == ["a.usr"]

    def test_foreign_file_is_kept_with_its_name(self, spool: Spool) -> None:
        """A file put in processing by hand is still resumed, under its own name."""
        (spool.processing / "manual.usr").write_bytes(b"x")
        [claim] = spool.pending_claims()
        assert claim.original_name == "manual.usr"

    def test_missing_folder_is_empty(self, tmp_path: Path) -> None:
        """No processing folder yet means nothing pending."""
        assert Spool(tmp_path / "p", tmp_path / "a", tmp_path / "q").pending_claims() == []


class TestArchive:
    def test_archive_into_dated_folder(self, spool: Spool, inbound: Path) -> None:
        """Archive moves to archive/YYYY/MM/DD/<original name>, with file_mode."""
        claim = spool.claim(drop(inbound, "a.usr", b"data"))
        assert claim
        os.chmod(claim.path, 0o666)
        path = spool.archive(claim, date(2024, 3, 7))
        assert path == spool.archive_dir / "2024" / "03" / "07" / "a.usr"
        assert path.read_bytes() == b"data" and not claim.path.exists()
        assert stat.S_IMODE(path.stat().st_mode) == 0o640
        assert stat.S_IMODE(path.parent.stat().st_mode) == 0o750

    def test_archive_never_overwrites(self, spool: Spool, inbound: Path) -> None:
        """Same-named files on the same day get numbered suffixes; none is overwritten."""
        paths = []
        for content in (b"1", b"2", b"3"):
            claim = spool.claim(drop(inbound, "a.usr", content))
            assert claim
            paths.append(spool.archive(claim, date(2024, 3, 7)))
        assert [p.name for p in paths] == ["a.usr", "a.1.usr", "a.2.usr"]
        assert [p.read_bytes() for p in paths] == [b"1", b"2", b"3"]

    def test_suffix_without_extension(self, spool: Spool, inbound: Path) -> None:
        """A name without an extension gets the number at the end."""
        day = date(2024, 1, 1)
        for _ in range(2):
            claim = spool.claim(drop(inbound, "README"))
            assert claim
            last = spool.archive(claim, day)
        assert last.name == "README.1"

    def test_crash_between_link_and_unlink_is_finished(self, spool: Spool, inbound: Path) -> None:
        """If a crash left the file both archived and in processing, redoing the archive just finishes it."""
        claim = spool.claim(drop(inbound, "a.usr"))
        assert claim
        folder = spool.archive_dir / "2024" / "03" / "07"
        folder.mkdir(parents=True)
        os.link(claim.path, folder / "a.usr")  # the crashed attempt's link
        [pending] = spool.pending_claims()
        assert spool.archive(pending, date(2024, 3, 7)) == folder / "a.usr"
        assert os.listdir(folder) == ["a.usr"] and not claim.path.exists()

    def test_missing_claim_is_storage_error(self, spool: Spool, tmp_path: Path) -> None:
        """Archiving a claim whose file is gone is a StorageError, not a silent success."""
        ghost = Claim(spool.processing / "00000000000000000001-1-x.usr", "x.usr", datetime.now(UTC))
        with pytest.raises(StorageError):
            spool.archive(ghost, date(2024, 1, 1))


class TestQuarantine:
    def test_report_beside_file(self, spool: Spool, inbound: Path) -> None:
        """Quarantine moves the file and writes <name>.error.json beside it."""
        claim = spool.claim(drop(inbound, "bad.usr", b"junk"))
        assert claim
        report = {"reason": "bad header", "defects": [{"line": 1}], "at": datetime(2024, 1, 1, tzinfo=UTC)}
        path = spool.quarantine(claim, report)
        assert path == spool.quarantine_dir / "bad.usr" and path.read_bytes() == b"junk"
        saved = json.loads((spool.quarantine_dir / "bad.usr.error.json").read_text())
        assert saved["reason"] == "bad header" and saved["defects"] == [{"line": 1}]
        assert saved["at"].startswith("2024-01-01")
        assert not claim.path.exists()
        assert sorted(os.listdir(spool.quarantine_dir)) == ["bad.usr", "bad.usr.error.json"]

    def test_no_overwrite(self, spool: Spool, inbound: Path) -> None:
        """A second same-named file gets its own name and its own report."""
        paths = []
        for n in (1, 2):
            claim = spool.claim(drop(inbound, "bad.usr", str(n).encode()))
            assert claim
            paths.append(spool.quarantine(claim, {"n": n}))
        assert [p.name for p in paths] == ["bad.usr", "bad.1.usr"]
        assert json.loads((spool.quarantine_dir / "bad.usr.error.json").read_text()) == {"n": 1}
        assert json.loads((spool.quarantine_dir / "bad.1.usr.error.json").read_text()) == {"n": 2}

    def test_crash_after_report_is_redone(self, spool: Spool, inbound: Path) -> None:
        """A report without its file (a crash before the move) is never replaced: the retry takes the next free
        pair of names (it cannot tell its own report from an original named like one)."""
        claim = spool.claim(drop(inbound, "bad.usr"))
        assert claim
        (spool.quarantine_dir / "bad.usr.error.json").write_text('{"old": true}')
        [pending] = spool.pending_claims()
        path = spool.quarantine(pending, {"new": True})
        assert path.name == "bad.1.usr"
        assert json.loads((spool.quarantine_dir / "bad.usr.error.json").read_text()) == {"old": True}
        assert json.loads((spool.quarantine_dir / "bad.1.usr.error.json").read_text()) == {"new": True}

    @pytest.mark.parametrize("encrypted", [False, True])
    def test_report_never_replaces_an_original(self, tmp_path: Path, spool: Spool, inbound: Path,
                                               encrypted: bool) -> None:
        """Issue 14: a bad file named `X.error.json`, then a bad file named `X`: X's report used to replace the first
        original. Both names are now chosen together."""
        if encrypted:
            from bridge.adapters.encryption import FileCipher
            spool = Spool(spool.processing, spool.archive_dir, spool.quarantine_dir, cipher=FileCipher(bytes(32)))
        suffix = ".enc" if encrypted else ""
        first = spool.claim(drop(inbound, "X.error.json", b"first original"))
        assert first
        spool.quarantine(first, {"n": 1})
        second = spool.claim(drop(inbound, "X", b"second original"))
        assert second
        path = spool.quarantine(second, {"n": 2})
        assert path.name == f"X.1{suffix}"
        kept = spool.quarantine_dir / f"X.error.json{suffix}"
        assert (b"".join(spool.cipher.decrypt_stream(kept)) if spool.cipher else kept.read_bytes()) == b"first original"

    def test_crash_after_link_is_finished(self, spool: Spool, inbound: Path) -> None:
        """If the file was already linked into quarantine, the retry only removes it from processing."""
        claim = spool.claim(drop(inbound, "bad.usr"))
        assert claim
        os.link(claim.path, spool.quarantine_dir / "bad.usr")
        path = spool.quarantine(claim, {"r": 1})
        assert path.name == "bad.usr" and not claim.path.exists()
        assert sorted(os.listdir(spool.quarantine_dir)) == ["bad.usr", "bad.usr.error.json"]

    def test_report_failure_leaves_claim_in_processing(
        self, spool: Spool, inbound: Path, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """If the report cannot be written, the file is not moved (so it is never quarantined without one)."""
        claim = spool.claim(drop(inbound, "bad.usr"))
        assert claim

        def fail(*args: object, **kwargs: object) -> None:
            raise StorageError("disk full")

        monkeypatch.setattr("bridge.adapters.spool.archive.write_atomic", fail)
        with pytest.raises(StorageError):
            spool.quarantine(claim, {"r": 1})
        assert claim.path.exists() and not (spool.quarantine_dir / "bad.usr").exists()


class TestWriteAtomic:
    def test_writes_bytes_with_mode(self, tmp_path: Path) -> None:
        """Bytes are written, with the mode regardless of the umask, and no temp file remains."""
        path = write_atomic(tmp_path / "out.usr", b"hello", mode=0o600)
        assert path.read_bytes() == b"hello"
        assert stat.S_IMODE(path.stat().st_mode) == 0o600
        assert os.listdir(tmp_path) == ["out.usr"]

    def test_writes_chunks(self, tmp_path: Path) -> None:
        """An iterable of chunks is concatenated."""
        write_atomic(tmp_path / "out", (bytes([i]) * 1000 for i in range(5)))
        assert (tmp_path / "out").read_bytes() == b"".join(bytes([i]) * 1000 for i in range(5))

    def test_replaces_existing(self, tmp_path: Path) -> None:
        """An existing file is replaced whole."""
        (tmp_path / "out").write_bytes(b"old old old")
        write_atomic(tmp_path / "out", b"new")
        assert (tmp_path / "out").read_bytes() == b"new"

    def test_exception_mid_iterable_leaves_nothing(self, tmp_path: Path) -> None:
        """An error while producing chunks leaves no file and no temp file."""

        def chunks() -> Iterator[bytes]:
            yield b"first half"
            raise ValueError("renderer failed")

        with pytest.raises(ValueError, match="renderer failed"):
            write_atomic(tmp_path / "out.usr", chunks())
        assert os.listdir(tmp_path) == []

    def test_exception_mid_iterable_keeps_old_file(self, tmp_path: Path) -> None:
        """A failed rewrite leaves the previous complete file untouched."""
        (tmp_path / "out").write_bytes(b"complete")

        def chunks() -> Iterator[bytes]:
            yield b"partial"
            raise RuntimeError("boom")

        with pytest.raises(RuntimeError):
            write_atomic(tmp_path / "out", chunks())
        assert (tmp_path / "out").read_bytes() == b"complete"
        assert os.listdir(tmp_path) == ["out"]

    def test_temp_name_is_hidden(self, tmp_path: Path) -> None:
        """While writing, the only name in the folder is dot-prefixed (ignored by watchers)."""
        seen: list[list[str]] = []

        def chunks() -> Iterator[bytes]:
            yield b"a"
            seen.append(os.listdir(tmp_path))
            yield b"b"

        write_atomic(tmp_path / "out", chunks())
        [[name]] = seen
        assert name.startswith(".out.") and name.endswith(".tmp")

    def test_missing_folder_is_storage_error(self, tmp_path: Path) -> None:
        """An OSError becomes a StorageError with the cause chained."""
        with pytest.raises(StorageError) as info:
            write_atomic(tmp_path / "nope" / "out", b"x")
        assert isinstance(info.value.__cause__, OSError)


class TestCrossFilesystem:
    def test_archive_on_another_filesystem_is_copied(
        self, spool: Spool, inbound: Path, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """When a hard link is impossible across filesystems (EXDEV), the archive gets a complete copy."""
        real_link = os.link
        processing = str(spool.processing)

        def link(src: object, dst: object) -> None:
            if str(src).startswith(processing):
                raise OSError(errno.EXDEV, "Invalid cross-device link")
            real_link(src, dst)  # type: ignore[arg-type]

        first = spool.claim(drop(inbound, "a.usr", b"one"))
        second = spool.claim(drop(inbound, "a.usr", b"two"))
        assert first and second
        monkeypatch.setattr(os, "link", link)
        paths = [spool.archive(first, date(2024, 1, 2)), spool.archive(second, date(2024, 1, 2))]
        assert [p.name for p in paths] == ["a.usr", "a.1.usr"]
        assert [p.read_bytes() for p in paths] == [b"one", b"two"]
        assert sorted(os.listdir(paths[0].parent)) == ["a.1.usr", "a.usr"]  # no temp copies left
        assert os.listdir(spool.processing) == []


class TestSetAside:
    """Issue 14: an entry that must not be opened is moved by rename, beside its report, never over a name."""

    @pytest.mark.parametrize("encrypted", [False, True])
    def test_a_symbolic_link_is_moved_as_it_is(self, tmp_path: Path, spool: Spool, inbound: Path,
                                               encrypted: bool) -> None:
        if encrypted:
            from bridge.adapters.encryption import FileCipher
            spool = Spool(spool.processing, spool.archive_dir, spool.quarantine_dir, cipher=FileCipher(bytes(32)))
        target = tmp_path / "target"
        target.write_bytes(b"outside")
        (inbound / "link.usr").symlink_to(target)
        (spool.quarantine_dir / "link.usr.error.json").write_text("an original named like a report")
        claim = spool.claim(inbound / "link.usr")
        assert claim is not None and spool.unsafe(claim) is not None
        path = spool.set_aside(claim, {"why": "a link"})
        # the plaintext report's name is taken by an original: the next pair; the encrypted one's is free
        name = "link.usr" if encrypted else "link.1.usr"
        report = spool.quarantine_dir / (name + ".error.json" + (".enc" if encrypted else ""))
        assert path == spool.quarantine_dir / name and os.readlink(path) == str(target)
        saved = b"".join(spool.cipher.decrypt_stream(report)) if spool.cipher else report.read_bytes()
        assert json.loads(saved) == {"why": "a link"}
        assert (spool.quarantine_dir / "link.usr.error.json").read_text() == "an original named like a report"
        assert not os.listdir(spool.processing)

    def test_a_regular_file_of_one_link_is_safe(self, spool: Spool, inbound: Path) -> None:
        claim = spool.claim(drop(inbound, "a.usr"))
        assert claim is not None and spool.unsafe(claim) is None
