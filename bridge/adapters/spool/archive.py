"""Archive and quarantine: a claimed file moved out of processing/ without ever being lost or overwriting
another, in plaintext or encrypted at rest; a quarantined file always beside its report."""

from __future__ import annotations

import os
import secrets
import stat
from collections.abc import Mapping
from datetime import date
from pathlib import Path
from typing import TYPE_CHECKING

from bridge.adapters.encryption import CHUNK_SIZE, ENCRYPTED_SUFFIX, HEADER_SIZE, TAG_SIZE
from bridge.adapters.spool.claims import REPORT_SUFFIX, ClaimFolders, report_bytes
from bridge.adapters.spool.files import (
    exists,
    fsync_folder,
    link_no_overwrite,
    read_bytes,
    remove_quietly,
    same_file,
    unlink_source,
    write_atomic,
)
from bridge.dtn.names import candidate_names
from bridge.errors import StorageError
from bridge.ports import Claim

if TYPE_CHECKING:
    from bridge.adapters.encryption import FileCipher


class ArchiveFolders(ClaimFolders):
    """The jobs of archive/ and quarantine/ on top of the claims'."""

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
        payload = report_bytes(report)
        self._set_mode(claim.path)
        if self.cipher is not None:
            return self._quarantine_encrypted(claim, payload, self.cipher)
        for name in candidate_names(claim.original_name):
            target = self.quarantine_dir / name
            report_path = target.with_name(name + REPORT_SUFFIX)
            if exists(target):
                if same_file(claim.path, target):  # a crash after link: finish the move
                    write_atomic(report_path, payload, mode=self.file_mode)
                    unlink_source(claim.path)
                    return target
                continue
            if exists(report_path):  # an original of that name, or a crashed attempt's report: never replaced
                continue
            write_atomic(report_path, payload, mode=self.file_mode)
            if link_no_overwrite(claim.path, target):
                fsync_folder(self.quarantine_dir)
                if read_bytes(report_path) != payload:  # another instance raced for the same name
                    write_atomic(report_path, payload, mode=self.file_mode)
                unlink_source(claim.path)
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
                if exists(target):
                    if _encrypted_copy_of(cipher, target, src):  # a crash before the claim was removed
                        unlink_source(src)
                        return target
                    continue
                if staged is None:
                    staged = self._stage_encrypted(src, folder, name)
                if link_no_overwrite(staged, target):
                    fsync_folder(folder)
                    unlink_source(src)
                    return target
        finally:
            if staged is not None:
                remove_quietly(staged)
        raise AssertionError("unreachable")  # pragma: no cover

    def _quarantine_encrypted(self, claim: Claim, payload: bytes, cipher: FileCipher) -> Path:
        for name in candidate_names(claim.original_name):
            target = self.quarantine_dir / (name + ENCRYPTED_SUFFIX)
            report_path = self.quarantine_dir / (name + REPORT_SUFFIX + ENCRYPTED_SUFFIX)
            if exists(target):
                if _encrypted_copy_of(cipher, target, claim.path):  # a crash after the link: finish the move
                    write_atomic(report_path, cipher.encrypt_bytes(payload), mode=self.file_mode)
                    unlink_source(claim.path)
                    return target
                continue
            if exists(report_path):  # an original of that name, or a crashed attempt's report: never replaced
                continue
            write_atomic(report_path, cipher.encrypt_bytes(payload), mode=self.file_mode)
            staged = self._stage_encrypted(claim.path, self.quarantine_dir, name)
            try:
                linked = link_no_overwrite(staged, target)
            finally:
                remove_quietly(staged)
            if linked:
                fsync_folder(self.quarantine_dir)
                if _decrypted_or_none(cipher, report_path) != payload:  # another instance raced for the name
                    write_atomic(report_path, cipher.encrypt_bytes(payload), mode=self.file_mode)
                unlink_source(claim.path)
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


def _move_no_overwrite(src: Path, folder: Path, name: str) -> Path:
    for candidate in candidate_names(name):
        target = folder / candidate
        if link_no_overwrite(src, target):
            fsync_folder(folder)
            unlink_source(src)
            return target
        if same_file(src, target):  # a crash between link and unlink last time
            unlink_source(src)
            return target
    raise AssertionError("unreachable")  # pragma: no cover


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
