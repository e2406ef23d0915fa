"""DTN file writer: header, group lines and trailer, byte for byte as the DTC and the real files lay them out.

The writer streams: it keeps only the counts and the checksum, so a file of any size is written in constant memory.
"""

from __future__ import annotations

from collections.abc import Sequence

from bridge.dtn.checksum import PoolChecksum
from bridge.dtn.model import FileHeader, GroupInstance

_GROUP_COUNT_MODULUS = 10**10


class FlowFileWriter:
    """Produces the lines of one file (each ending in LF). Call `header`, then `instance` per flow, then `trailer`."""

    def __init__(self, header: FileHeader, *, dtn_checksum: str = "") -> None:
        """`dtn_checksum` is written verbatim into a ZHV trailer (the DTC leaves its algorithm open); pool
        trailers always carry the computed pool checksum."""
        self.file_header = header
        self.dtn_checksum = dtn_checksum
        self.group_count = 0
        self.flow_count = 0
        self._checksum = PoolChecksum()
        self._terminator = "|\n" if header.terminated else "\n"
        self._pool = header.layout != "ZHV"  # only a pool trailer carries the computed checksum

    def _line(self, record: str) -> str:
        if self._pool:
            self._checksum.add(record + "|" if self.file_header.terminated else record)
        return record + self._terminator

    def header(self) -> str:
        h = self.file_header
        if h.layout == "ZHD-POOL":
            return self._line(f"ZHD|{h.flow_reference}|{h.from_role}|{h.from_participant}|{h.to_role}|"
                              f"{h.to_participant}|{h.created}")
        return self._line("|".join(["ZHV" if h.layout == "ZHV" else "ZHD", h.file_identifier, h.flow_reference,
                                    h.from_role, h.from_participant, h.to_role, h.to_participant, h.created,
                                    h.sending_application, h.receiving_application, h.broadcast,
                                    h.test_data_flag]))

    def instance(self, root: GroupInstance) -> list[str]:
        """The lines of one flow instance, depth first, as the reader nests them."""
        return self.records(instance_records(root))

    def records(self, records: Sequence[str]) -> list[str]:
        """The lines of one flow instance given as its records (`instance_records`): how a worker process hands
        over an instance, as plain strings."""
        self.flow_count += 1
        self.group_count += len(records)
        return [self._line(record) for record in records]

    def trailer(self, completed: str) -> str:
        """The ZPT line; must come last. `completed` is the File Completion Timestamp (ccyymmddhhmmss)."""
        if self.file_header.layout == "ZHV":
            record = "|".join(["ZPT", self.file_header.file_identifier, str(self.group_count % _GROUP_COUNT_MODULUS),
                               self.dtn_checksum, str(self.flow_count), completed])
        else:
            record = "|".join(["ZPT", str(self.group_count + 2), str(self._checksum.value)])
        return record + ("|" if self.file_header.terminated else "") + "\n"


def instance_records(root: GroupInstance) -> tuple[str, ...]:
    """The records of one flow instance (its lines without the terminator), depth first, as the reader nests them."""
    records = []
    stack = [root]
    while stack:
        group = stack.pop()
        records.append("|".join((group.definition.code, *group.values)))
        stack.extend(reversed(group.children))
    return tuple(records)
