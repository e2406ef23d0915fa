"""One object for equal values, in a bounded table: what a worker process sends through its pipe is pickled with a
memo, so equal keys, headers and decisions shared this way cross once per batch (and take memory once)."""

from __future__ import annotations

from typing import TypeVar

_T = TypeVar("_T")


class Interner:
    """`intern(value)` is the first equal value seen (forgotten all at once past `limit` entries). Thread-safe: a
    race can only leave two equal objects in use."""

    def __init__(self, limit: int = 4096) -> None:
        self.limit = limit
        self._seen: dict[object, object] = {}

    def __call__(self, value: _T) -> _T:
        if len(self._seen) > self.limit:
            self._seen.clear()
        return self._seen.setdefault(value, value)  # type: ignore[return-value]
