"""The ledger: one SQLite table recording what happened to every file the bridge claimed.

It answers "was this content already published?" (duplicate detection by SHA-256), "where was I?" after a crash
(`get_by_claim_path` for each pending claim), the status summary, and which outbound events were already written
(`seen_event` / `seen_events`, keyed as CloudEvents define uniqueness: by `source` and `id`).

Durability: WAL journal with `synchronous=FULL`, so a committed state change survives a power cut (the ledger is
written a handful of times per file, so the fsync per commit is affordable). Times are stored as UTC ISO-8601 text;
"today" in `summary` is the UTC day.

Thread-safety: one `Ledger` holds one connection (`check_same_thread=False`) guarded by a lock, so it can be shared
by the threads of one process; every method is one short transaction. Several processes may open the same file
(WAL plus a busy timeout); their writes are serialised by SQLite.

Schema changes are migrations keyed by `PRAGMA user_version`; a ledger written by a newer bridge is refused.

Layout: `connection.py` opens the file and migrates it (the schema of both sides), `inbound.py` holds the claimed
files' methods, `outbound.py` the written events', outbound files' and manifests'; `Ledger` joins the two sides.
"""

from __future__ import annotations

from bridge.adapters.ledger.connection import SCHEMA_VERSION
from bridge.adapters.ledger.inbound import STATES, InboundLedger, LedgerSummary, QuarantinedFile
from bridge.adapters.ledger.outbound import OutboundLedger
from bridge.ports import EventKey, FileRecord, OutboundFileDraft, OutboundFileRecord

__all__ = [
    "SCHEMA_VERSION",
    "STATES",
    "EventKey",
    "FileRecord",
    "Ledger",
    "LedgerSummary",
    "OutboundFileDraft",
    "OutboundFileRecord",
    "QuarantinedFile",
]


class Ledger(InboundLedger, OutboundLedger):
    """The ledger file; open with `Ledger(path)` (e.g. `config.state.ledger_path`), close with `close()`. One object
    for both sides (the `InboundLedger` and `OutboundLedger` ports of bridge/ports/), so that the daemon holds one
    ledger; each side's methods live in its own module."""
