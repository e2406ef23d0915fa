"""The ports: what the chains (bridge/inbound, bridge/outbound, bridge/replay.py) ask of the edges, and the plain
values that cross those boundaries.

The chains import from here, never from bridge/adapters, so they load no pika, sqlite3 or watchdog and run against
the in-memory fakes of tests/fakes.py. The composition root (bridge/service.py) hands them the real adapters:

* the broker (`Publisher`, `Consumer`): bridge.adapters.rabbitmq's `RabbitPublisher` and `RabbitConsumer`, held to
  the fakes by tests/adapters/rabbitmq/test_ports_contract.py;
* the ledger (`InboundLedger`, `OutboundLedger`): bridge.adapters.ledger's SQLite `Ledger`, one object for both;
* the spool (`Spool`: claim, archive, quarantine) and the outbound folder (`Outbox`): bridge.adapters.spool's
  `Spool` and `FolderOutbox`; tests/adapters/test_storage_contract.py holds these and the ledger to their fakes;
* the drop folder's watcher (`Watcher`): bridge.adapters.watcher's `DropWatcher`;
* worker processes (`WorkerProcess`, made by a `SpawnWorker`): bridge.adapters.processes's `ChildProcess`.
"""


from bridge.ports.broker import (
    CLOUDEVENTS_JSON,
    Backoff,
    BrokerRefusal,
    Consumer,
    Delivery,
    MessagesRejected,
    OutgoingMessage,
    Publisher,
    PublishResult,
)
from bridge.ports.ledger import (
    EventKey,
    FileRecord,
    InboundLedger,
    OutboundFileDraft,
    OutboundFileRecord,
    OutboundLedger,
)
from bridge.ports.pair import PairSession, PairState, SharedFile
from bridge.ports.storage import Claim, Outbox, Spool, Watcher
from bridge.ports.workers import SpawnWorker, WorkerProcess

__all__ = [
    "CLOUDEVENTS_JSON",
    "Backoff",
    "BrokerRefusal",
    "Claim",
    "Consumer",
    "Delivery",
    "EventKey",
    "FileRecord",
    "InboundLedger",
    "MessagesRejected",
    "OutboundFileDraft",
    "OutboundFileRecord",
    "OutboundLedger",
    "Outbox",
    "OutgoingMessage",
    "PairSession",
    "PairState",
    "PublishResult",
    "Publisher",
    "SharedFile",
    "SpawnWorker",
    "Spool",
    "Watcher",
    "WorkerProcess",
]

