"""The pool-file checksum (Elexon/BSC ZHD ... ZPT files), J1078.

For every record before the trailer (header included, no line terminator) the characters are taken four at a time as
a big-endian 32-bit word (a short last word is zero-padded on the right) and all words of all records are XORed;
the result is written as an unsigned decimal. Verified against real PARMS files (dtc-format.md section 1.4).
"""

from __future__ import annotations

_CHUNK_WORDS = 1 << 14  # fold 64 KiB at a time: a few big-integer operations instead of a Python loop per word


class PoolChecksum:
    """Incremental checksum: `add` each record, then read `value`."""

    __slots__ = ("_pending", "_pending_size", "_value")

    def __init__(self) -> None:
        self._pending: list[bytes] = []
        self._pending_size = 0
        self._value = 0

    def add(self, record: str) -> None:
        """Add one record (a line without its terminator)."""
        data = record.encode("latin-1", "replace")
        padding = -len(data) % 4
        if padding:
            data += b"\0" * padding
        self._pending.append(data)
        self._pending_size += len(data)
        if self._pending_size >= _CHUNK_WORDS * 4:
            self._fold()

    def _fold(self) -> None:
        chunk = b"".join(self._pending)
        self._pending.clear()
        self._pending_size = 0
        words = len(chunk) // 4
        if not words:
            return
        width = 1 << (words - 1).bit_length()  # pad to a power of two words; zero words do not change an XOR
        number = int.from_bytes(chunk, "big") << (32 * (width - words))
        bits = 32 * width
        while bits > 32:
            bits //= 2
            number = (number >> bits) ^ (number & ((1 << bits) - 1))
        self._value ^= number

    @property
    def value(self) -> int:
        """The checksum of every record added so far (0 .. 2**32-1)."""
        self._fold()
        return self._value


def pool_checksum(records: list[str]) -> int:
    """The checksum of `records` (lines before the trailer, without terminators)."""
    checksum = PoolChecksum()
    for record in records:
        checksum.add(record)
    return checksum.value
