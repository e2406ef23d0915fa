"""Atomic file helpers of the spool and the outbound writer: writes that appear complete or not at all, moves that
never overwrite (a hard link, a fsynced copy across filesystems, or a checked rename), and fsynced folders."""

from __future__ import annotations

import errno
import hashlib
import os
import secrets
import stat
from collections.abc import Iterable
from pathlib import Path

from bridge.errors import StorageError


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
    return rename_no_overwrite(src, target)


_NO_LINK_ERRNOS = {errno.EPERM, errno.ENOTSUP, errno.EOPNOTSUPP, errno.EMLINK}


def rename_no_overwrite(src: Path, target: Path) -> bool:
    if exists(target):
        return False
    try:
        os.rename(src, target)
    except OSError as exc:
        raise StorageError(f"cannot move {src} to {target}: {exc.strerror or exc}") from exc
    return True


def _copy_no_overwrite(src: Path, target: Path) -> bool:
    """Cross-filesystem: copy to a hidden temp name beside `target`, fsync, then link or rename it into place."""
    if exists(target):
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
            return rename_no_overwrite(tmp, target)
        return True
    finally:
        try:
            os.unlink(tmp)
        except OSError:
            pass  # a leftover hidden copy wastes space but loses nothing


def unlink_source(src: Path) -> None:
    try:
        os.unlink(src)
    except FileNotFoundError:
        return  # the rename fallback already moved it
    except OSError as exc:
        raise StorageError(f"cannot remove {src} after moving it: {exc.strerror or exc}") from exc
    fsync_folder(src.parent)


def exists(path: Path) -> bool:
    try:
        os.lstat(path)
    except FileNotFoundError:
        return False
    except OSError as exc:
        raise StorageError(f"cannot stat {path}: {exc.strerror or exc}") from exc
    return True


def same_file(a: Path, b: Path) -> bool:
    try:
        sa, sb = os.lstat(a), os.lstat(b)
    except FileNotFoundError:
        return False
    except OSError as exc:
        raise StorageError(f"cannot stat {a} or {b}: {exc.strerror or exc}") from exc
    return (sa.st_dev, sa.st_ino) == (sb.st_dev, sb.st_ino)


def sha256_if_present(path: Path) -> str | None:
    """The file's SHA-256, or None when it is not there; StorageError when it cannot be read."""
    try:
        return sha256_of(path)
    except FileNotFoundError:
        return None
    except OSError as exc:
        raise StorageError(f"cannot read {path}: {exc.strerror or exc}") from exc


def remove_if_present(path: Path) -> None:
    """Remove `path`; already gone is fine (a retry, or the other daemon of a pair was first); StorageError else."""
    try:
        os.unlink(path)
    except FileNotFoundError:
        pass
    except OSError as exc:
        raise StorageError(f"cannot remove {path}: {exc.strerror or exc}") from exc


def remove_quietly(path: Path) -> None:
    try:
        os.unlink(path)
    except OSError:
        pass  # a leftover hidden staging file holds ciphertext only; it wastes space but loses nothing


def read_bytes(path: Path) -> bytes | None:
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
