"""File moves that never lose a file: claim (inbound -> processing), archive, quarantine, and atomic writes.

The rules that make this safe:

* A file is *claimed* by one `os.rename` into `processing/`. Rename is atomic, so when two bridge instances share an
  inbound folder exactly one rename succeeds and the other sees the file vanish (`claim` returns None). Inbound and
  processing must be on the same filesystem (rename cannot cross filesystems; that is reported as a StorageError).
* Claimed names are `<20-digit ns timestamp>-<pid>-<original name>`, strictly increasing within a process, so
  `pending_claims()` after a crash resumes in the order the files were claimed.
* Archive and quarantine never overwrite: the move is `link` (fails if the name exists) then `unlink`; a same-named
  file gets a numbered suffix. If a crash falls between link and unlink, the retry recognises its own link (same
  inode) and only removes the processing name. An archive on another filesystem gets a fsynced copy instead (a crash
  after the copy can then leave a second, suffixed copy — never a lost file).
* Quarantine writes `<name>.error.json` *before* moving the file, so a quarantined file always has its report. The
  file's name and its report's are chosen together: a candidate is taken only when both are free, so a report never
  replaces a quarantined original (a bad file may itself be named `X.error.json`). A crash in between leaves the
  claim in processing and an orphan report; the restart quarantines the file again under the next free name.
* Dropped names are kept when they are safe (UTF-8, no control characters, at most MAX_NAME_BYTES bytes); any other
  name is kept as a cleaned, shortened form ending in `~<8 hex digits of its SHA-256>` (`stored_name`), so that every
  name built from it (claim, archive, report, staging) fits the filesystem and the ledger.
* A claimed entry that is not a regular file with one link we can read (a symbolic link swapped in after the
  watcher's check, a hard link to a file elsewhere, an unreadable file) is never opened, changed or linked:
  `set_aside` renames it into quarantine beside its report.
* Every move and write fsyncs the folder(s) it changed, so a power cut cannot resurrect or lose a name.
* With a `cipher` (encryption at rest, see bridge.adapters.encryption) archive and quarantine store `<name>.enc`
  and `<name>.error.json.enc` instead: the encrypted copy is written under a hidden staging name, fsynced, linked
  to its final name (never overwriting), and only then is the plaintext claim removed. A crash before the removal
  leaves the claim in processing; the retry recognises its own encrypted copy (same size, same plaintext) and only
  removes the claim. A crash while staging leaves a hidden `.*.staging` file of ciphertext (safe to delete).
"""

from __future__ import annotations

import errno
import hashlib
import itertools
import json
import os
import re
import secrets
import stat
import threading
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, date, datetime
from pathlib import Path
from typing import TYPE_CHECKING

from bridge.adapters.encryption import CHUNK_SIZE, ENCRYPTED_SUFFIX, HEADER_SIZE, TAG_SIZE
from bridge.errors import StorageError

if TYPE_CHECKING:
    from bridge.adapters.encryption import FileCipher

__all__ = ["MAX_NAME_BYTES", "REPORT_SUFFIX", "Claim", "Spool", "stored_name", "write_atomic"]

REPORT_SUFFIX = ".error.json"
# A dropped name longer than this is shortened: the longest name built from it (the hidden temp file of an encrypted
# report, `.<name>.<n>.error.json.enc.<12 hex>.tmp`) must stay within the 255 bytes of a file name.
MAX_NAME_BYTES = 180
_UNSAFE_CHARACTERS = re.compile("[\x00-\x1f\x7f\ud800-\udfff]")  # controls; undecodable bytes (surrogateescape)
_CLAIM_NAME = re.compile(r"(?P<ns>\d{20})-(?P<pid>\d+)-(?P<name>.+)", re.DOTALL)
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


@dataclass(frozen=True, slots=True)
class Claim:
    """A file this process owns: its path in processing/, the name it arrived with, and when it was claimed."""

    path: Path
    original_name: str
    claimed_at: datetime

    @classmethod
    def from_path(cls, path: Path) -> Claim:
        """Rebuild a claim from its processing/ name (a foreign name keeps its name and uses its mtime)."""
        match = _CLAIM_NAME.fullmatch(path.name)
        if match:
            ns = int(match["ns"])
            return cls(path, match["name"], _utc_from_ns(ns))
        try:
            ns = path.lstat().st_mtime_ns
        except OSError:
            ns = 0
        return cls(path, stored_name(path.name), _utc_from_ns(ns))


class Spool:
    """The processing, archive and quarantine folders; safe to share between threads and between processes."""

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

    # ---------------------------------------------------------------------------------------------------- claim

    def claim(self, path: Path) -> Claim | None:
        """Take `path` into processing/ by an atomic rename; None if it vanished (another instance took it)."""
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
        claims = [Claim.from_path(Path(e.path)) for e in entries if not e.is_dir(follow_symlinks=False)]
        claims.sort(key=_claim_order)
        return claims

    # ---------------------------------------------------------------------------------------- archive/quarantine

    def archive(self, claim: Claim, day: date) -> Path:
        """Move the claim to archive/YYYY/MM/DD/<original name> (numbered suffix if taken); returns the new path."""
        folder = self.archive_dir / f"{day.year:04d}" / f"{day.month:02d}" / f"{day.day:02d}"
        self._make_dirs(folder)
        self._set_mode(claim.path)
        if self.cipher is not None:
            return self._encrypt_no_overwrite(claim.path, folder, claim.original_name)
        return _move_no_overwrite(claim.path, folder, claim.original_name)

    def quarantine(self, claim: Claim, report: Mapping[str, object]) -> Path:
        """Write `<name>.error.json` then move the claim to quarantine/<name> beside it; returns the file's path.

        With a cipher: `<name>.error.json.enc` and `<name>.enc` (defect texts quote the file's values).
        """
        self._make_dirs(self.quarantine_dir)
        payload = _report_bytes(report)
        self._set_mode(claim.path)
        if self.cipher is not None:
            return self._quarantine_encrypted(claim, payload, self.cipher)
        for name in candidate_names(claim.original_name):
            target = self.quarantine_dir / name
            report_path = target.with_name(name + REPORT_SUFFIX)
            if _exists(target):
                if _same_file(claim.path, target):  # a crash after link: finish the move
                    write_atomic(report_path, payload, mode=self.file_mode)
                    _unlink_source(claim.path)
                    return target
                continue
            if _exists(report_path):  # an original of that name, or a crashed attempt's report: never replaced
                continue
            write_atomic(report_path, payload, mode=self.file_mode)
            if link_no_overwrite(claim.path, target):
                fsync_folder(self.quarantine_dir)
                if _read_bytes(report_path) != payload:  # another instance raced for the same name
                    write_atomic(report_path, payload, mode=self.file_mode)
                _unlink_source(claim.path)
                return target
        raise AssertionError("unreachable")  # pragma: no cover - candidate_names is infinite

    def set_aside(self, claim: Claim, report: Mapping[str, object]) -> Path:
        """Quarantine an entry `unsafe` refused, by rename only: never opened, linked or chmodded (a file that a
        hard link shares, or a symbolic link's target, stays as it was); its report beside it, encrypted with a
        cipher (the entry is not: its bytes are never read)."""
        self._make_dirs(self.quarantine_dir)
        payload = _report_bytes(report)
        if self.cipher is not None:
            payload = self.cipher.encrypt_bytes(payload)
        report_suffix = REPORT_SUFFIX + (ENCRYPTED_SUFFIX if self.cipher is not None else "")
        for name in candidate_names(claim.original_name):
            target = self.quarantine_dir / name
            report_path = self.quarantine_dir / (name + report_suffix)
            if _exists(target) or _exists(report_path):
                continue
            write_atomic(report_path, payload, mode=self.file_mode)
            if _rename_no_overwrite(claim.path, target):
                fsync_folder(self.quarantine_dir)
                fsync_folder(claim.path.parent)
                return target
        raise AssertionError("unreachable")  # pragma: no cover - candidate_names is infinite

    def _encrypt_no_overwrite(self, src: Path, folder: Path, name: str) -> Path:
        """Store an encrypted copy of `src` as folder/<candidate>.enc, then remove `src`; returns the new path."""
        cipher = self.cipher
        assert cipher is not None
        staged: Path | None = None
        try:
            for candidate in candidate_names(name):
                target = folder / (candidate + ENCRYPTED_SUFFIX)
                if _exists(target):
                    if _encrypted_copy_of(cipher, target, src):  # a crash before the claim was removed
                        _unlink_source(src)
                        return target
                    continue
                if staged is None:
                    staged = self._stage_encrypted(src, folder, name)
                if link_no_overwrite(staged, target):
                    fsync_folder(folder)
                    _unlink_source(src)
                    return target
        finally:
            if staged is not None:
                _remove_quietly(staged)
        raise AssertionError("unreachable")  # pragma: no cover

    def _quarantine_encrypted(self, claim: Claim, payload: bytes, cipher: FileCipher) -> Path:
        for name in candidate_names(claim.original_name):
            target = self.quarantine_dir / (name + ENCRYPTED_SUFFIX)
            report_path = self.quarantine_dir / (name + REPORT_SUFFIX + ENCRYPTED_SUFFIX)
            if _exists(target):
                if _encrypted_copy_of(cipher, target, claim.path):  # a crash after the link: finish the move
                    write_atomic(report_path, cipher.encrypt_bytes(payload), mode=self.file_mode)
                    _unlink_source(claim.path)
                    return target
                continue
            if _exists(report_path):  # an original of that name, or a crashed attempt's report: never replaced
                continue
            write_atomic(report_path, cipher.encrypt_bytes(payload), mode=self.file_mode)
            staged = self._stage_encrypted(claim.path, self.quarantine_dir, name)
            try:
                linked = link_no_overwrite(staged, target)
            finally:
                _remove_quietly(staged)
            if linked:
                fsync_folder(self.quarantine_dir)
                if _decrypted_or_none(cipher, report_path) != payload:  # another instance raced for the name
                    write_atomic(report_path, cipher.encrypt_bytes(payload), mode=self.file_mode)
                _unlink_source(claim.path)
                return target
        raise AssertionError("unreachable")  # pragma: no cover

    def _stage_encrypted(self, src: Path, folder: Path, name: str) -> Path:
        """Encrypt `src` to a hidden, fsynced file in `folder` (same filesystem as the target: link works)."""
        assert self.cipher is not None
        staging = folder / f".{name}.{secrets.token_hex(6)}.staging"
        try:
            with src.open("rb") as source:
                return write_atomic(
                    staging,
                    self.cipher.encrypt_chunks(iter(lambda: source.read(CHUNK_SIZE), b"")),
                    mode=self.file_mode,
                )
        except FileNotFoundError as exc:
            raise StorageError(f"claimed file {src} is missing from processing") from exc
        except OSError as exc:
            raise StorageError(f"cannot read {src}: {exc.strerror or exc}") from exc

    # ------------------------------------------------------------------------------------------------- helpers

    def _make_dirs(self, folder: Path) -> None:
        make_folders(folder, self.dir_mode)

    def _set_mode(self, path: Path) -> None:
        """Best effort: the gateway may have dropped the file world-readable, or owned by another user. Through a
        descriptor opened without following links, and only on a regular file of one link: a mode change must never
        reach a file outside the spool."""
        try:
            fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC)
        except FileNotFoundError as exc:
            raise StorageError(f"claimed file {path} is missing from processing") from exc
        except OSError:
            return  # unreadable, or a symbolic link (ELOOP): left as it is
        try:
            details = os.fstat(fd)
            if stat.S_ISREG(details.st_mode) and details.st_nlink == 1:
                os.fchmod(fd, self.file_mode)
        except PermissionError:
            pass
        except OSError as exc:
            raise StorageError(f"cannot chmod {path}: {exc.strerror or exc}") from exc
        finally:
            os.close(fd)


def make_folders(folder: Path, mode: int) -> None:
    """Create `folder` and its missing parents with `mode` (mkdir's mode is masked by the umask, so chmod too), each
    made durable in its parent. A folder another process makes meanwhile is fine; a file in the way is an error."""
    missing: list[Path] = []
    probe = folder
    while not probe.exists() and probe != probe.parent:
        missing.append(probe)
        probe = probe.parent
    try:
        for created in reversed(missing):
            try:
                created.mkdir(mode=mode)
            except FileExistsError:
                continue  # another process made it meanwhile
            os.chmod(created, mode)
            fsync_folder(created.parent)
        if not folder.is_dir():
            raise StorageError(f"{folder}: exists and is not a folder")
    except OSError as exc:
        raise StorageError(f"cannot create folder {folder}: {exc.strerror or exc}") from exc


def write_atomic(path: Path, chunks: bytes | Iterable[bytes], mode: int = 0o640) -> Path:
    """Write a file so it appears complete or not at all under `path` (replacing any existing file).

    The data goes to `.<name>.<random>.tmp` in the same folder (dot-prefixed: watchers and gateways ignore it), is
    fsynced, renamed over `path`, and the folder is fsynced. On any error the temp file is removed and the error
    propagates (OSError as StorageError).
    """
    path = Path(path)
    folder = path.parent
    tmp = folder / f".{path.name}.{secrets.token_hex(6)}.tmp"
    try:
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_CLOEXEC", 0), mode)
    except OSError as exc:
        raise StorageError(f"cannot create {tmp}: {exc.strerror or exc}") from exc
    try:
        try:
            os.fchmod(fd, mode)  # the open mode is masked by the umask
            data: Iterable[bytes | bytearray | memoryview]
            if isinstance(chunks, (bytes, bytearray, memoryview)):
                data = (chunks,)
            else:
                data = chunks
            for chunk in data:
                view = memoryview(chunk)
                while view:
                    written = os.write(fd, view)
                    view = view[written:]
            os.fsync(fd)
        finally:
            os.close(fd)
        os.rename(tmp, path)
    except BaseException as exc:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        if isinstance(exc, OSError):
            raise StorageError(f"cannot write {path}: {exc.strerror or exc}") from exc
        raise
    fsync_folder(folder)
    return path


# ----------------------------------------------------------------------------------------------------- internals


def _report_bytes(report: Mapping[str, object]) -> bytes:
    return json.dumps(dict(report), indent=2, sort_keys=True, default=str, ensure_ascii=False).encode() + b"\n"


def _utc_from_ns(ns: int) -> datetime:
    return datetime.fromtimestamp(ns / 1e9, tz=UTC)


def _claim_order(claim: Claim) -> tuple[int, int, str]:
    match = _CLAIM_NAME.fullmatch(claim.path.name)
    if match:
        return (int(match["ns"]), int(match["pid"]), claim.path.name)
    return (int(claim.claimed_at.timestamp() * 1e9), 0, claim.path.name)


def candidate_names(name: str) -> Iterable[str]:
    """`name`, then `stem.1.ext`, `stem.2.ext`, ... (the extension stays last for tools that look at it)."""
    yield name
    dot = name.rfind(".")
    stem, ext = (name[:dot], name[dot:]) if dot > 0 else (name, "")
    for n in itertools.count(1):
        yield f"{stem}.{n}{ext}"


def _move_no_overwrite(src: Path, folder: Path, name: str) -> Path:
    for candidate in candidate_names(name):
        target = folder / candidate
        if link_no_overwrite(src, target):
            fsync_folder(folder)
            _unlink_source(src)
            return target
        if _same_file(src, target):  # a crash between link and unlink last time
            _unlink_source(src)
            return target
    raise AssertionError("unreachable")  # pragma: no cover


def sha256_of(path: Path) -> str:
    """SHA-256 of the file's bytes, read in 1 MiB pieces (OSError as the system raises it)."""
    digest = hashlib.sha256()
    with open(path, "rb") as stream:
        while chunk := stream.read(1 << 20):
            digest.update(chunk)
    return digest.hexdigest()


def link_no_overwrite(src: Path, target: Path) -> bool:
    """Give `src`'s content the name `target` without overwriting; False if `target` exists.

    A hard link where possible; across filesystems a copy (fsynced, under a hidden name, then linked into place);
    on filesystems without hard links a check-then-rename (one process handles a claim, so that is safe enough).
    """
    try:
        os.link(src, target)
        return True
    except FileExistsError:
        return False
    except FileNotFoundError as exc:
        raise StorageError(f"cannot move {src} to {target}: {exc.strerror or exc}") from exc
    except OSError as exc:
        if exc.errno == errno.EXDEV:
            return _copy_no_overwrite(src, target)
        if exc.errno not in _NO_LINK_ERRNOS:
            raise StorageError(f"cannot move {src} to {target}: {exc.strerror or exc}") from exc
    return _rename_no_overwrite(src, target)


_NO_LINK_ERRNOS = {errno.EPERM, errno.ENOTSUP, errno.EOPNOTSUPP, errno.EMLINK}


def _rename_no_overwrite(src: Path, target: Path) -> bool:
    if _exists(target):
        return False
    try:
        os.rename(src, target)
    except OSError as exc:
        raise StorageError(f"cannot move {src} to {target}: {exc.strerror or exc}") from exc
    return True


def _copy_no_overwrite(src: Path, target: Path) -> bool:
    """Cross-filesystem: copy to a hidden temp name beside `target`, fsync, then link or rename it into place."""
    if _exists(target):
        return False
    try:
        mode = stat.S_IMODE(os.stat(src).st_mode)
        with src.open("rb") as source:
            tmp = write_atomic(
                target.with_name(f".{target.name}.{secrets.token_hex(6)}.copy"),
                iter(lambda: source.read(1 << 20), b""),
                mode=mode,
            )
    except OSError as exc:
        raise StorageError(f"cannot copy {src} to {target}: {exc.strerror or exc}") from exc
    try:
        try:
            os.link(tmp, target)
        except FileExistsError:
            return False
        except OSError as exc:
            if exc.errno not in _NO_LINK_ERRNOS:
                raise StorageError(f"cannot move {src} to {target}: {exc.strerror or exc}") from exc
            return _rename_no_overwrite(tmp, target)
        return True
    finally:
        try:
            os.unlink(tmp)
        except OSError:
            pass  # a leftover hidden copy wastes space but loses nothing


def _unlink_source(src: Path) -> None:
    try:
        os.unlink(src)
    except FileNotFoundError:
        return  # the rename fallback already moved it
    except OSError as exc:
        raise StorageError(f"cannot remove {src} after moving it: {exc.strerror or exc}") from exc
    fsync_folder(src.parent)


def _exists(path: Path) -> bool:
    try:
        os.lstat(path)
    except FileNotFoundError:
        return False
    except OSError as exc:
        raise StorageError(f"cannot stat {path}: {exc.strerror or exc}") from exc
    return True


def _same_file(a: Path, b: Path) -> bool:
    try:
        sa, sb = os.lstat(a), os.lstat(b)
    except FileNotFoundError:
        return False
    except OSError as exc:
        raise StorageError(f"cannot stat {a} or {b}: {exc.strerror or exc}") from exc
    return (sa.st_dev, sa.st_ino) == (sb.st_dev, sb.st_ino)


def _encrypted_size(plain_size: int) -> int:
    chunks = max(1, -(-plain_size // CHUNK_SIZE))
    return HEADER_SIZE + chunks * TAG_SIZE + plain_size


def _encrypted_copy_of(cipher: FileCipher, encrypted: Path, plain: Path) -> bool:
    """True if `encrypted` decrypts to exactly the content of `plain` (cheap size check first)."""
    try:
        plain_size = os.stat(plain).st_size
        if os.stat(encrypted).st_size != _encrypted_size(plain_size):
            return False
        with plain.open("rb") as source:
            for chunk in cipher.decrypt_stream(encrypted):
                if source.read(len(chunk)) != chunk:
                    return False
            return source.read(1) == b""
    except (OSError, StorageError):
        return False  # unreadable, another key, corrupt: not ours, take another name


def _decrypted_or_none(cipher: FileCipher, path: Path) -> bytes | None:
    try:
        return b"".join(cipher.decrypt_stream(path))
    except StorageError:
        return None


def _remove_quietly(path: Path) -> None:
    try:
        os.unlink(path)
    except OSError:
        pass  # a leftover hidden staging file holds ciphertext only; it wastes space but loses nothing


def _read_bytes(path: Path) -> bytes | None:
    try:
        return path.read_bytes()
    except OSError:
        return None


def fsync_folder(folder: Path, *, missing_ok: bool = False) -> None:
    """Make a folder's entries (a rename, a new name) durable."""
    try:
        fd = os.open(folder, os.O_RDONLY | getattr(os, "O_DIRECTORY", 0))
    except FileNotFoundError as exc:
        if missing_ok:
            return
        raise StorageError(f"cannot open folder {folder}: {exc.strerror or exc}") from exc
    except OSError as exc:
        raise StorageError(f"cannot open folder {folder}: {exc.strerror or exc}") from exc
    try:
        os.fsync(fd)
    except OSError as exc:
        raise StorageError(f"cannot fsync folder {folder}: {exc.strerror or exc}") from exc
    finally:
        os.close(fd)
