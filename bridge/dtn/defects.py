"""The defects and warnings of one pass, bounded: a badly broken file must not make an unbounded report."""

from __future__ import annotations

from collections.abc import Mapping

from bridge.dtn.checks import Severity, rule
from bridge.dtn.lines import UnreadableLine
from bridge.dtn.model import Defect


class DefectLog:
    """Collects a pass's defects (the file is invalid) and warnings (checks set to `warn`: reported, but the file
    stays valid), each up to `max_defects`; `truncated` says that more defects were found than kept, which ends
    the pass."""

    __slots__ = ("defects", "max_defects", "severities", "truncated", "warnings", "warnings_truncated")

    def __init__(self, max_defects: int, severities: Mapping[str, Severity]) -> None:
        self.max_defects = max_defects
        self.severities = severities
        self.defects: list[Defect] = []
        self.truncated = False
        self.warnings: list[Defect] = []
        self.warnings_truncated = False

    def add(self, rule: str, message: str, **where: object) -> None:
        if len(self.defects) >= self.max_defects:
            self.truncated = True
            return
        self.defects.append(Defect(rule, message, **where))  # type: ignore[arg-type]

    def failed_check(self, name: str, message: str, **where: object) -> None:
        """A named check failed: a defect under `error`, a warning under `warn`."""
        if self.severities[name] == "error":
            self.add(rule(name), message, **where)
        elif len(self.warnings) < self.max_defects:
            self.warnings.append(Defect(rule(name), message, **where))  # type: ignore[arg-type]
        else:
            self.warnings_truncated = True

    def unreadable(self, error: UnicodeDecodeError | UnreadableLine, line: int) -> None:
        """The line that ends the pass early: nothing after it is read or judged."""
        if isinstance(error, UnreadableLine):
            self.add(error.rule, error.message, line=line)
        else:
            self.add("encoding", f"bytes that are not UTF-8 text ({error.reason})", line=line)
