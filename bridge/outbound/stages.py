"""Where stage 1 runs: the loop hands each delivery to a check stage and takes the answers back in delivery order.

Two stages share one small interface: `InlineChecks` checks in the loop's own thread; the worker processes of
bridge/outbound/workers.py (`CheckWorkers`) check on the other cores, since the check (its signature verification
above all), not the broker or the disk, is what an outbound event costs most.
"""

from __future__ import annotations

from typing import Protocol

from bridge.outbound.check import Checked, MessageChecker
from bridge.ports import Delivery


class CheckStage(Protocol):
    """Checks deliveries; answers come back in the order they were submitted."""

    @property
    def pending(self) -> int:
        """Deliveries submitted whose answers were not taken yet."""

    def submit(self, delivery: Delivery) -> None:
        """Start checking one delivery."""

    def take(self, *, drain: bool) -> list[tuple[Delivery, Checked]]:
        """The answers ready now, oldest first; `drain`: wait for every pending one (the queue is idle)."""

    def reset(self) -> None:
        """Forget every pending delivery (its connection was lost: the broker gives it again)."""

    def close(self) -> None:
        """Release what the stage holds (processes)."""


class InlineChecks:
    """Each delivery checked as it is submitted, in the caller's thread."""

    def __init__(self, checker: MessageChecker) -> None:
        self.checker = checker
        self._done: list[tuple[Delivery, Checked]] = []

    @property
    def pending(self) -> int:
        return len(self._done)

    def submit(self, delivery: Delivery) -> None:
        self._done.append((delivery, self.checker.check(delivery.body)))

    def take(self, *, drain: bool) -> list[tuple[Delivery, Checked]]:
        done, self._done = self._done, []
        return done

    def reset(self) -> None:
        self._done.clear()

    def close(self) -> None:
        self._done.clear()
