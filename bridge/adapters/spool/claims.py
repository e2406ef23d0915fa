"""Claiming dropped files (inbound -> processing/ by one atomic rename), the names they are kept under, the
claims a crash left behind, and setting aside by rename an entry that must not be opened."""

from __future__ import annotations

import hashlib
import json
import os
import re
import stat
import threading
import time
from collections.abc import Mapping
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING

import structlog

from bridge.adapters.encryption import ENCRYPTED_SUFFIX
from bridge.adapters.spool.files import (
    exists,
    fsync_folder,
    make_folders,
    rename_no_overwrite,
    sha256_of,
    write_atomic,
)
from bridge.dtn.names import candidate_names
from bridge.errors import StorageError
from bridge.ports import Claim

if TYPE_CHECKING:
    from bridge.adapters.encryption import FileCipher

REPORT_SUFFIX = ".error.json"
# A dropped name longer than this is shortened: the longest name built from it (the hidden temp file of an encrypted
# report, `.<name>.<n>.error.json.enc.<12 hex>.tmp`) must stay within the 255 bytes of a file name.
MAX_NAME_BYTES = 180
_UNSAFE_CHARACTERS = re.compile("[\x00-\x1f\x7f\ud800-\udfff]")  # controls; undecodable bytes (surrogateescape)
_CLAIM_NAME = re.compile(r"(?P<ns>\d{20})-(?P<pid>\d+)-(?P<name>.+)", re.DOTALL)
log = structlog.get_logger("dtn_bridge.inbound")
_clock_lock = threading.Lock()
_last_ns = 0


def _next_claim_ns() -> int:
    """Wall-clock nanoseconds, strictly increasing within this process (claim names stay unique and ordered)."""
    global _last_ns
    with _clock_lock:
        now = max(time.time_ns(), _last_ns + 1)
        _last_ns = now
        return now


def stored_name(name: str) -> str:
    """The name a dropped file is kept under: `name` itself when it is safe to store and to build names from;
    otherwise its controls and undecodable bytes as `_`, cut to fit, and `~` and 8 hex digits of the raw name's SHA-256
    (two hostile names stay apart, and the log names the same file every time)."""
    clean = _UNSAFE_CHARACTERS.sub("_", name)
    encoded = clean.encode()
    if clean == name and len(encoded) <= MAX_NAME_BYTES:
        return name
    digest = hashlib.sha256(os.fsencode(name)).hexdigest()[:8]
    return f"{encoded[:MAX_NAME_BYTES - 9].decode(errors='ignore')}~{digest}"


def claim_from_path(path: Path) -> Claim:
    """Rebuild a claim from its processing/ name (a foreign name keeps its name and uses its mtime)."""
    match = _CLAIM_NAME.fullmatch(path.name)
    if match:
        return Claim(path, match["name"], _utc_from_ns(int(match["ns"])))
    try:
        ns = path.lstat().st_mtime_ns
    except OSError:
        ns = 0
    return Claim(path, stored_name(path.name), _utc_from_ns(ns))


class ClaimFolders:
    """The spool's folders, and the jobs of processing/: claim, check, list and set aside (archive and quarantine
    are bridge/adapters/spool/archive.py's)."""

    def __init__(
        self,
        processing: Path,
        archive: Path,
        quarantine: Path,
        file_mode: int = 0o640,
        dir_mode: int = 0o750,
        cipher: FileCipher | None = None,
    ) -> None:
        """`cipher` None keeps archive and quarantine in plaintext; with one they are encrypted at rest."""
        self.processing = Path(processing)
        self.archive_dir = Path(archive)
        self.quarantine_dir = Path(quarantine)
        self.file_mode = file_mode
        self.dir_mode = dir_mode
        self.cipher = cipher
        self._copied: dict[Path, tuple[int, int]] = {}  # shadow mode: dropped file -> (size, mtime) of its copy

    # ---------------------------------------------------------------------------------------------------- claim

    def claim(self, path: Path) -> Claim | None:
        """Take `path` into processing/ by an atomic rename; None if it vanished (another instance took it).

        The rename is the claim: of two daemons (a pair) renaming the same file out of their shared inbound folder
        into their own processing folders, exactly one succeeds, as long as both are on inbound's filesystem
        (config.check_folders insists) and that filesystem renames atomically (a local one, NFS)."""
        path = Path(path)
        try:
            if stat.S_ISDIR(os.lstat(path).st_mode):
                return None  # a folder is not a dropped file (the watcher ignores folders)
        except FileNotFoundError:
            return None
        except OSError as exc:
            raise StorageError(f"cannot claim {path}: {exc.strerror or exc}") from exc
        # Anything else is taken, even if it is no longer the regular file the watcher saw: `unsafe` says so after the
        # rename, when it can no longer be swapped, and `set_aside` moves it on without opening it.
        name = stored_name(path.name)
        ns = _next_claim_ns()
        target = self.processing / f"{ns:020d}-{os.getpid()}-{name}"
        try:
            os.rename(path, target)
        except FileNotFoundError:
            if os.path.lexists(target):
                # Ours after all: over NFS a retransmitted rename can answer ENOENT to the call that did it (the
                # name is unique to this process, so nobody else made it).
                fsync_folder(self.processing)
                return Claim(target, name, _utc_from_ns(ns))
            if not self.processing.is_dir():
                raise StorageError(
                    f"cannot claim {path}: processing folder {self.processing} is missing"
                ) from None
            return None
        except OSError as exc:
            raise StorageError(f"cannot claim {path} into {self.processing}: {exc.strerror or exc}") from exc
        fsync_folder(self.processing)
        fsync_folder(path.parent, missing_ok=True)
        return Claim(target, name, _utc_from_ns(ns))

    def claim_copy(self, path: Path) -> Claim | None:
        """Shadow mode: claim a copy of a dropped file and leave the gateway's file where it is; None when it is
        gone, cannot be opened, is not a regular file of one link, or was copied already as it is now."""
        try:  # never through a link, never blocking on a pipe swapped in after the watcher's check
            fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC)
        except FileNotFoundError:
            return None
        except OSError as exc:
            log.warning("file_skipped", file=stored_name(path.name), reason=f"cannot be opened: {exc.strerror}")
            return None
        with open(fd, "rb") as source:
            details = os.fstat(fd)
            signature = (details.st_size, details.st_mtime_ns)
            if self._copied.get(path) == signature:
                return None  # seen already: the rescan finds files that stay in the folder
            self._copied[path] = signature
            if not stat.S_ISREG(details.st_mode) or details.st_nlink != 1:
                log.warning("file_skipped", file=stored_name(path.name), reason="not a regular file of one link")
                return None
            target = self.processing / f"{time.time_ns():020d}-{os.getpid()}-{stored_name(path.name)}"
            write_atomic(target, iter(lambda: source.read(1 << 20), b""), mode=self.file_mode)
        return claim_from_path(target)

    def sha256(self, claim: Claim) -> str:
        """The SHA-256 of the claimed file's bytes (OSError as the system raises it)."""
        return sha256_of(claim.path)

    def unsafe(self, claim: Claim) -> str | None:
        """Why the claimed entry must not be opened, changed or linked, or None for a regular file of one link that
        can be read. Checked after the claim: in processing/ nobody else can swap it any more."""
        try:
            details = os.lstat(claim.path)
        except FileNotFoundError as exc:
            raise StorageError(f"claimed file {claim.path} is missing from processing") from exc
        except OSError as exc:
            raise StorageError(f"cannot stat {claim.path}: {exc.strerror or exc}") from exc
        if not stat.S_ISREG(details.st_mode):
            return "not a regular file (a symbolic link, a device or a pipe): it is not opened"
        if details.st_nlink != 1:
            return (f"a hard link ({details.st_nlink} names share the file): a file linked from elsewhere is not "
                    "read or changed")
        try:
            os.close(os.open(claim.path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC))
        except OSError as exc:
            return f"the file cannot be read ({exc.strerror or exc})"
        return None

    def pending_claims(self) -> list[Claim]:
        """Files a previous run claimed but did not finish, in claim order (dot-prefixed temp files skipped)."""
        try:
            entries = [e for e in os.scandir(self.processing) if not e.name.startswith(".")]
        except FileNotFoundError:
            return []
        except OSError as exc:
            raise StorageError(f"cannot list {self.processing}: {exc.strerror or exc}") from exc
        claims = [claim_from_path(Path(e.path)) for e in entries if not e.is_dir(follow_symlinks=False)]
        claims.sort(key=_claim_order)
        return claims

    def set_aside(self, claim: Claim, report: Mapping[str, object]) -> Path:
        """Quarantine an entry `unsafe` refused, by rename only: never opened, linked or chmodded (a file that a
        hard link shares, or a symbolic link's target, stays as it was); its report beside it, encrypted with a
        cipher (the entry is not: its bytes are never read)."""
        self._make_dirs(self.quarantine_dir)
        payload = report_bytes(report)
        if self.cipher is not None:
            payload = self.cipher.encrypt_bytes(payload)
        report_suffix = REPORT_SUFFIX + (ENCRYPTED_SUFFIX if self.cipher is not None else "")
        for name in candidate_names(claim.original_name):
            target = self.quarantine_dir / name
            report_path = self.quarantine_dir / (name + report_suffix)
            if exists(target) or exists(report_path):
                continue
            write_atomic(report_path, payload, mode=self.file_mode)
            if rename_no_overwrite(claim.path, target):
                fsync_folder(self.quarantine_dir)
                fsync_folder(claim.path.parent)
                return target
        raise AssertionError("unreachable")  # pragma: no cover - candidate_names is infinite

    def _make_dirs(self, folder: Path) -> None:
        make_folders(folder, self.dir_mode)


def report_bytes(report: Mapping[str, object]) -> bytes:
    return json.dumps(dict(report), indent=2, sort_keys=True, default=str, ensure_ascii=False).encode() + b"\n"


def _utc_from_ns(ns: int) -> datetime:
    return datetime.fromtimestamp(ns / 1e9, tz=UTC)


def _claim_order(claim: Claim) -> tuple[int, int, str]:
    match = _CLAIM_NAME.fullmatch(claim.path.name)
    if match:
        return (int(match["ns"]), int(match["pid"]), claim.path.name)
    return (int(claim.claimed_at.timestamp() * 1e9), 0, claim.path.name)
