"""The daily reconciliation report: files in, events out, files written, rejected, by flow and participant.

Migration teams compare it with their own DTN handling (shadow mode) to prove that the bridge lost and changed
nothing. Pure aggregation over ledger records; `dtn-bridge report` reads the ledger and prints it.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from bridge.adapters.ledger import FileRecord, OutboundFileRecord


@dataclass
class Row:
    """One (direction, flow, participant) line of the report."""

    files_in: int = 0
    archived: int = 0
    quarantined: int = 0
    duplicates_or_shadowed: int = 0
    in_flight: int = 0
    events_out: int = 0
    files_written: int = 0
    events_written: int = 0


@dataclass
class Report:
    """Rows keyed by (flow, sender, recipient), and the quarantine reasons of the day."""

    day: str
    rows: dict[tuple[str, str, str], Row] = field(default_factory=dict)
    reasons: list[dict[str, str]] = field(default_factory=list)

    def row(self, flow: str | None, sender: str | None, recipient: str | None) -> Row:
        return self.rows.setdefault((flow or "-", sender or "-", recipient or "-"), Row())

    def as_json(self) -> dict[str, Any]:
        return {"day": self.day,
                "rows": [{"flow": key[0], "from": key[1], "to": key[2], **vars(row)}
                         for key, row in sorted(self.rows.items())],
                "quarantined": self.reasons}

    def table(self) -> str:
        header = (f"{'flow':<9} {'from':<5} {'to':<5} {'in':>6} {'archived':>8} {'quarant.':>8} {'skipped':>7} "
                  f"{'pending':>7} {'events out':>10} {'written':>7} {'ev. written':>11}")
        lines = [f"reconciliation {self.day}", header, "-" * len(header)]
        total = Row()
        for (flow, sender, recipient), row in sorted(self.rows.items()):
            lines.append(f"{flow:<9} {sender:<5} {recipient:<5} {row.files_in:>6} {row.archived:>8} "
                         f"{row.quarantined:>8} {row.duplicates_or_shadowed:>7} {row.in_flight:>7} "
                         f"{row.events_out:>10} {row.files_written:>7} {row.events_written:>11}")
            for name, value in vars(row).items():
                setattr(total, name, getattr(total, name) + value)
        lines.append("-" * len(header))
        lines.append(f"{'total':<21} {total.files_in:>6} {total.archived:>8} {total.quarantined:>8} "
                     f"{total.duplicates_or_shadowed:>7} {total.in_flight:>7} {total.events_out:>10} "
                     f"{total.files_written:>7} {total.events_written:>11}")
        for reason in self.reasons:
            lines.append(f"quarantined {reason['file']}: {reason['reason']}")
        return "\n".join(lines)


def reconcile(day: str, inbound: Iterable[FileRecord], outbound: Iterable[OutboundFileRecord]) -> Report:
    """The report of one day from the ledger's records of that day."""
    report = Report(day)
    for record in inbound:
        row = report.row(record.flow, record.from_participant, record.to_participant)
        row.files_in += 1
        if record.state == "quarantined":
            row.quarantined += 1
            report.reasons.append({"file": record.original_name, "reason": record.reason or ""})
        elif record.state == "archived" and record.events:
            row.archived += 1
            row.events_out += record.events
        elif record.state == "archived":
            row.duplicates_or_shadowed += 1
        else:
            row.in_flight += 1
    for written in outbound:
        row = report.row(written.flow, written.from_participant, written.to_participant)
        row.files_written += 1
        row.events_written += written.events
    return report
