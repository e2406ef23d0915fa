"""The outbound folder on the filesystem: the `Outbox` port (bridge/ports/) of the outbound writer's exactly-once
protocol. Every write is fsynced before its name is linked, a final name is never overwritten (a hard link fails on
a taken name), and the folder is fsynced so a power cut cannot lose or resurrect a name."""

from __future__ import annotations

import os
from pathlib import Path

from bridge.adapters.spool.files import fsync_folder, link_no_overwrite, remove_if_present, sha256_if_present
from bridge.errors import StorageError


class FolderOutbox:
    """One outbound folder; files are created with `file_mode` (whatever the umask)."""

    def __init__(self, folder: Path | str, file_mode: int = 0o640) -> None:
        self._folder = Path(folder)
        self.file_mode = file_mode

    @property
    def folder(self) -> Path:
        return self._folder

    def taken(self, path: Path) -> bool:
        return os.path.lexists(path)

    def write_synced(self, path: Path, data: bytes) -> None:
        try:
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, self.file_mode)
        except (OSError, ValueError) as exc:  # ValueError: a NUL in the name
            raise StorageError(f"cannot create {path!r}: {getattr(exc, 'strerror', None) or exc}") from exc
        try:
            os.fchmod(fd, self.file_mode)  # the open mode is masked by the umask
            view = memoryview(data)
            while view:
                view = view[os.write(fd, view):]
            os.fsync(fd)
        except OSError as exc:
            raise StorageError(f"cannot write {path}: {exc.strerror or exc}") from exc
        finally:
            os.close(fd)

    def link(self, tmp: Path, path: Path) -> bool:
        return link_no_overwrite(tmp, path)

    def remove(self, path: Path) -> None:
        remove_if_present(path)

    def sha256(self, path: Path) -> str | None:
        return sha256_if_present(path)

    def sync(self) -> None:
        fsync_folder(self._folder)
