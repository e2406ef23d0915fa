"""Per-participant access on the broker, as a RabbitMQ definitions document (`rabbitmqctl import_definitions`).

Pure: the bridge's `Topology` (the one description of its exchanges, queues and bindings) and the participants ->
a plain dict. Every participant gets a user, vhost permissions limited to its own queues (`p.<MPID>.` names) and
the bridge's exchange, and topic permissions on that exchange that let it bind only keys addressed to its own MPID
(and the broadcast flows it is entitled to) and publish only with itself as the sender. It can never read the event
store, the bridge's queues or the dead-letter exchange: they match none of its regexes. docs/security.md.
"""

from __future__ import annotations

import base64
import hashlib
import re
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any
from urllib.parse import unquote, urlsplit

from bridge.adapters.rabbitmq.topology import Topology
from bridge.dtn.definitions import FLOW_SELECTOR
from bridge.rules.model import BROADCAST

HASHING_ALGORITHM = "rabbit_password_hashing_sha256"
MANIFEST_PREFIX = "file.received"
_SEGMENT = r"[^.]+"  # one routing-key word; also `*` or `#` in a binding key, which then stays inside the word


@dataclass(frozen=True, slots=True)
class ParticipantAccess:
    """One participant's broker identity. `password_hash` None: no password, certificate (EXTERNAL) login only;
    `broadcasts` None: every broadcast flow, else the flow selectors (D0010, D0010002) it may bind."""

    id: str
    user: str
    password_hash: str | None
    broadcasts: frozenset[str] | None = None

    @property
    def queue_prefix(self) -> str:
        """The names of the queues this participant may declare, bind, consume and delete begin with this."""
        return queue_prefix(self.id)


@dataclass(frozen=True, slots=True)
class KeyPrefixes:
    """The first words of the routing keys of inbound traffic: production `inbound`, the subscriber routes'
    minimised copies (rules.subscribers[].routing_key_prefix), each also under the test prefix (None: no test
    traffic reaches the exchange)."""

    subscribers: tuple[str, ...] = ()
    test: str | None = "test"

    def inbound(self) -> tuple[str, ...]:
        """Every prefix under which events and manifests addressed to a participant are published."""
        production = ("inbound", MANIFEST_PREFIX, *self.subscribers)
        return production if self.test is None else (*production, *(f"{self.test}.{p}" for p in production))


def queue_prefix(mpid: str) -> str:
    """`p.<MPID>.`: the name prefix of a participant's own queues."""
    return f"p.{mpid}."


def vhost_of(url: str) -> str:
    """The virtual host an amqp(s):// URL names, as pika reads it: no path or `/` is the default vhost `/`."""
    path = urlsplit(url).path
    return "/" if path in ("", "/") else unquote(path[1:])


def password_hash(password: str, salt: bytes) -> str:
    """RabbitMQ's `rabbit_password_hashing_sha256`: base64(salt + SHA-256(salt + UTF-8 password)), a 4-byte salt."""
    if len(salt) != 4:
        raise ValueError("a RabbitMQ password salt is 4 bytes")
    return base64.b64encode(salt + hashlib.sha256(salt + password.encode("utf-8")).digest()).decode("ascii")


def read_pattern(participant: ParticipantAccess, prefixes: KeyPrefixes) -> str:
    """The topic `read` regex: binding keys addressed to the participant, and entitled broadcasts."""
    words = "|".join(re.escape(prefix) for prefix in prefixes.inbound())
    own = rf"^(?:{words})\.{_SEGMENT}\.{_SEGMENT}\.{participant.id}$"
    if participant.broadcasts is not None and not participant.broadcasts:
        return own
    flows = _SEGMENT if participant.broadcasts is None else "|".join(
        _flow_pattern(selector) for selector in sorted(participant.broadcasts))
    return rf"{own}|^(?:{words})\.(?:{flows})\.{_SEGMENT}\.{BROADCAST}$"


def write_pattern(participant: ParticipantAccess) -> str:
    """The topic `write` regex: outbound events with the participant as the sender."""
    return rf"^outbound\.{_SEGMENT}\.{participant.id}\.{_SEGMENT}$"


def _flow_pattern(selector: str) -> str:
    if not FLOW_SELECTOR.fullmatch(selector):
        raise ValueError(f"{selector!r} is not a flow like D0010 or a flow version like D0010002")
    # no `{3}`: topic permission patterns expand {username}-like variables
    return selector if len(selector) == 8 else f"{selector}[0-9][0-9][0-9]"


def broker_definitions(topology: Topology, vhost: str, participants: Iterable[ParticipantAccess], *,
                       prefixes: KeyPrefixes = KeyPrefixes()) -> dict[str, Any]:
    """The definitions document: the vhost, the topology and, per participant, a user with its permissions."""
    chosen = list(participants)
    exchange = re.escape(topology.exchange)
    users: list[dict[str, Any]] = []
    permissions: list[dict[str, str]] = []
    topic_permissions: list[dict[str, str]] = []
    for participant in chosen:
        users.append({"name": participant.user, "password_hash": participant.password_hash or "",
                      "hashing_algorithm": HASHING_ALGORITHM, "tags": []})
        own = rf"p\.{participant.id}\..*"
        permissions.append({"user": participant.user, "vhost": vhost, "configure": f"^{own}$",
                            "write": f"^(?:{own}|{exchange})$", "read": f"^(?:{own}|{exchange})$"})
        topic_permissions.append({"user": participant.user, "vhost": vhost, "exchange": topology.exchange,
                                  "write": write_pattern(participant), "read": read_pattern(participant, prefixes)})
    return {
        "users": users,
        "vhosts": [{"name": vhost}],
        "permissions": permissions,
        "topic_permissions": topic_permissions,
        "parameters": [],
        "global_parameters": [],
        "policies": [],  # the topology sets everything through queue arguments (x-queue-type, x-max-age, ...)
        "exchanges": [{"name": spec.name, "vhost": vhost, "type": spec.type, "durable": spec.durable,
                       "auto_delete": False, "internal": False, "arguments": {}} for spec in topology.exchanges],
        "queues": [{"name": spec.name, "vhost": vhost, "durable": spec.durable, "auto_delete": False,
                    "arguments": dict(spec.arguments)} for spec in topology.queues],
        "bindings": [{"source": spec.exchange, "vhost": vhost, "destination": spec.queue,
                      "destination_type": "queue", "routing_key": spec.routing_key, "arguments": {}}
                     for spec in topology.bindings],
    }
