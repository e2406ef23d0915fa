"""The worker-process port: bridge.adapters.processes's `ChildProcess` implements it."""

from __future__ import annotations

from typing import Any, Protocol


class WorkerProcess(Protocol):
    """One worker process and the daemon's end of its pipe (bridge/inbound/workers.py, bridge/outbound/workers.py).

    Its answers come in the order of the messages; a process that died or fell silent raises WorkerError."""

    role: str

    @property
    def pid(self) -> int | None:
        """The process id while it runs."""
        ...

    @property
    def running(self) -> bool:
        """Whether the process is alive."""
        ...

    def start(self) -> None:
        """Start the process; it builds what it serves from its values."""
        ...

    def send(self, message: tuple[object, ...]) -> None:
        """Send one message (picklable values) to the process."""
        ...

    def ready(self) -> bool:
        """Whether an answer can be received without waiting."""
        ...

    def receive(self) -> tuple[str, Any]:
        """The next answer (kind, value)."""
        ...

    def close(self, *, graceful: bool = True) -> None:
        """Stop the process (after its current job when graceful). Safe to call twice."""
        ...


class SpawnWorker(Protocol):
    """Makes (does not start) a worker process: `role` names it in errors, `target` ("module:function") serves it
    from `values`, and `log` is the (level, format) it logs with."""

    def __call__(self, role: str, target: str, values: object, log: tuple[str, str]) -> WorkerProcess: ...
