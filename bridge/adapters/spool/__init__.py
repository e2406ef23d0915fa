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

from bridge.adapters.spool.archive import ArchiveFolders
from bridge.adapters.spool.claims import MAX_NAME_BYTES, REPORT_SUFFIX, claim_from_path, stored_name
from bridge.adapters.spool.files import (
    fsync_folder,
    link_no_overwrite,
    make_folders,
    sha256_of,
    write_atomic,
)
from bridge.adapters.spool.outbox import FolderOutbox
from bridge.dtn.names import candidate_names
from bridge.ports import Claim

__all__ = [
    "MAX_NAME_BYTES",
    "REPORT_SUFFIX",
    "Claim",
    "FolderOutbox",
    "Spool",
    "candidate_names",
    "claim_from_path",
    "fsync_folder",
    "link_no_overwrite",
    "make_folders",
    "sha256_of",
    "stored_name",
    "write_atomic",
]


class Spool(ArchiveFolders):
    """The processing, archive and quarantine folders; safe to share between threads and between processes.

    The `Spool` port of bridge/ports/. Its jobs live by kind: claims.py (claim, claim_copy, unsafe, sha256,
    pending_claims, set_aside), archive.py (archive, quarantine), files.py (the atomic file helpers they share with
    the outbound folder, outbox.py: the `Outbox` port).
    """
