"""The one exception tree of dtn-bridge.

Bad *data* (a defect in a flow file) is a value, `bridge.dtn.model.Defect`, collected into reports; exceptions mean
"this unit of work cannot go on". Adapters translate library exceptions into this tree (`raise ... from exc`), and the
edges (CLI, quarantine report, dead-letter header) render them once.

    BridgeError
    ├── ConfigError              a configuration file or value is wrong (carries the dotted key)
    ├── FlowDefinitionError      a flow_definitions/*.yaml file is wrong (carries file and key)
    ├── CatalogueError           the DTC documents cannot be imported (`definitions import`)
    ├── FlowFileError            a DTN file cannot be read or rendered (carries the defects)
    ├── EventError               an event does not fit its flow definition or the envelope rules
    ├── SignatureError           signing or verification failed (carries a machine `reason`)
    ├── StorageError             the filesystem or the ledger failed
    └── BrokerError              RabbitMQ failed
        ├── BrokerUnavailable    cannot connect, or the connection was lost: retry later
        └── PublishRejected      the broker nacked or returned a message: the unit fails
"""

from __future__ import annotations

from collections.abc import Sequence


class BridgeError(Exception):
    """Base of every error dtn-bridge raises on purpose."""


class ConfigError(BridgeError):
    """A configuration value is wrong; `key` is its dotted path."""

    def __init__(self, key: str, message: str, source: str | None = None) -> None:
        self.key = key
        self.message = message
        self.source = source
        where = f"{source}: " if source else ""
        super().__init__(f"{where}{key}: {message}")


class FlowDefinitionError(BridgeError):
    """A flow definition file is invalid; names the file and the key."""

    def __init__(self, file: str, key: str, message: str) -> None:
        self.file = file
        self.key = key
        self.message = message
        super().__init__(f"{file}: {key}: {message}" if key else f"{file}: {message}")


class CatalogueError(BridgeError):
    """The DTC catalogue documents cannot be read or turned into flow definitions."""


class FlowFileError(BridgeError):
    """A DTN file cannot be parsed or rendered; `defects` lists why."""

    def __init__(self, message: str, defects: Sequence[object] | None = None) -> None:
        self.defects = list(defects or [])
        super().__init__(message)


class EventError(BridgeError):
    """An event cannot be turned into a flow instance (or the other way round)."""


class SignatureError(BridgeError):
    """Signing or verification failed; `reason` is a stable machine code, the message is for people."""

    def __init__(self, reason: str, message: str) -> None:
        self.reason = reason
        super().__init__(message)


class StorageError(BridgeError):
    """A filesystem or ledger operation failed."""


class WorkerError(BridgeError):
    """A worker process (inbound build, outbound checks) died or stopped answering; its work is retried with a new
    one."""


class BrokerError(BridgeError):
    """RabbitMQ failed."""


class BrokerUnavailable(BrokerError):
    """The broker cannot be reached or the connection was lost; the work is retried later."""


class PublishRejected(BrokerError):
    """The broker nacked or returned (unroutable) a message; the unit of work fails."""
