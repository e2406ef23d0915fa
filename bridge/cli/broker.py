"""`dtn-bridge broker definitions`: the broker objects and per-participant access, as a RabbitMQ definitions file.

    dtn-bridge broker definitions --config bridge.yaml --participants participants.yaml -o definitions.json
    rabbitmqctl import_definitions definitions.json

The topology is the one the daemon declares (bridge.service.topology_for); the participants' routing-key rights
follow the configuration's rules (subscriber routes, test prefix, broadcast). docs/security.md.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path
from typing import Any

from bridge.adapters.rabbitmq.definitions import KeyPrefixes, broker_definitions, vhost_of
from bridge.adapters.rabbitmq.participants import load_participants
from bridge.config import load_config
from bridge.dtn.definitions import load_definitions
from bridge.errors import StorageError
from bridge.service import load_rules, topology_for

EXIT_OK = 0


def register(subparsers: Any) -> None:
    """Add `broker definitions`."""
    broker = subparsers.add_parser("broker", help="RabbitMQ set-up: topology and per-participant access")
    commands = broker.add_subparsers(dest="broker_command", required=True, metavar="COMMAND")
    definitions = commands.add_parser("definitions", help="print a definitions document for rabbitmqctl "
                                                          "import_definitions: topology, users, permissions")
    definitions.add_argument("--config", type=Path, required=True, metavar="FILE", help="the bridge configuration")
    definitions.add_argument("--participants", type=Path, required=True, metavar="FILE",
                             help="the participants file (docs/security.md)")
    definitions.add_argument("-o", "--out", type=Path, metavar="FILE",
                             help="write here (mode 0600: it holds password hashes) instead of stdout")
    definitions.set_defaults(run=run_definitions)


def run_definitions(args: argparse.Namespace) -> int:
    """Build the document from the configuration and the participants file; write it."""
    config = load_config(args.config)
    flows = load_definitions(config.flows.definitions)
    rules = load_rules(config, flows)
    participants = load_participants(args.participants, list(flows))
    test = rules.test_data.routing_key_prefix if rules.test_data.action == "route" else None
    prefixes = KeyPrefixes(tuple(route.routing_key_prefix for route in rules.subscribers), test)
    document = broker_definitions(topology_for(config), vhost_of(config.broker.urls[0]), participants,
                                  prefixes=prefixes)
    text = json.dumps(document, indent=2) + "\n"
    if args.out is None:
        sys.stdout.write(text)
        return EXIT_OK
    try:
        fd = os.open(args.out, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        os.fchmod(fd, 0o600)  # an existing file keeps its mode otherwise
        with os.fdopen(fd, "w", encoding="utf-8") as out:
            out.write(text)
    except OSError as exc:
        raise StorageError(f"cannot write {args.out}: {exc.strerror or exc}") from exc
    return EXIT_OK
