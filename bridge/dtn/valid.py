"""What the first pass learned of a valid file: the value the reader makes and the second pass reads.

Its own module so that `bridge.dtn.reader` (which makes it) and `bridge.dtn.second_pass` (which reads it) both import
it, rather than each other.
"""

from __future__ import annotations

from dataclasses import dataclass

from bridge.dtn.compiled import FlowDefinition
from bridge.dtn.definitions import DefinitionSet
from bridge.dtn.model import FileHeader, FileTrailer


@dataclass(frozen=True, slots=True)
class ValidFile:
    """All the second pass needs of a valid file, and small enough to send to a worker process (`portable`: the
    definition by its reference)."""

    definition: FlowDefinition
    header: FileHeader
    trailer: FileTrailer
    flow_count: int
    group_count: int

    def portable(self) -> tuple[str, FileHeader, FileTrailer, int, int]:
        return (self.definition.reference, self.header, self.trailer, self.flow_count, self.group_count)

    @classmethod
    def from_portable(cls, portable: tuple[str, FileHeader, FileTrailer, int, int],
                      definitions: DefinitionSet) -> ValidFile:
        reference, header, trailer, flow_count, group_count = portable
        return cls(definitions[reference], header, trailer, flow_count, group_count)
