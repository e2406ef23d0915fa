"""The outbound state an active/standby pair shares: bridge.adapters.pair implements it."""

from __future__ import annotations

import contextlib
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Protocol


@dataclass(frozen=True, slots=True)
class SharedFile:
    """An outbound file one daemon of an active/standby pair wrote: its name in the outbound folder and the
    (source, id) keys of its events, so that the other daemon never writes them again."""

    number: int
    name: str
    sha256: str
    events: tuple[tuple[str, str], ...]


class PairSession(Protocol):
    """The pair's outbound state while this daemon holds the pair's lock (bridge/adapters/pair.py)."""

    def news(self) -> list[SharedFile]:
        """Files the other daemon wrote since this one last looked (a dead writer's half-recorded file settled)."""
        ...

    def next_identifier(self, sender: str, at_least: int) -> int:
        """The pair's next file identifier number of `sender`, never one either daemon took, at least `at_least`."""
        ...

    def identifiers(self) -> Mapping[str, int]:
        """The last file identifier number the pair took, by sender."""
        ...

    def begin(self, name: str, tmp_name: str, sha256: str, events: list[tuple[str, str]]) -> int:
        """Record a file as pending before it is linked into the outbound folder; returns its record number."""
        ...

    def finish(self, number: int) -> None:
        """The recorded file is in place."""
        ...

    def drop(self, number: int) -> None:
        """The recorded file never reached its final name."""
        ...


class PairState(Protocol):
    """The outbound state the two daemons of a pair share; `session()` holds the pair's lock."""

    def session(self) -> contextlib.AbstractContextManager[PairSession]:
        ...
