"""`dtn-bridge rules check`: dry-run the governance rules on DTN files or NDJSON events and print every decision.

The same stage the daemon runs (bridge.rules), fed from disk: a DTN file gets the whole-file decision and, when that
accepts it, one decision per event; an events file gets one decision per line. Nothing is published or moved.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Mapping
from contextlib import ExitStack
from pathlib import Path
from typing import Any

import orjson

from bridge.cli.ndjson import read_events
from bridge.cli.progress import input_file, is_stdin, spooled_stdin
from bridge.config import BridgeConfig, load_config
from bridge.dtn.definitions import load_definitions
from bridge.dtn.reader import FlowFileReader
from bridge.inbound.flowfile import check_file, file_events
from bridge.rules import (
    REDACTED_ATTRIBUTE,
    Decision,
    EventDecision,
    FileFacts,
    RuleSet,
    decide_inbound_file,
    parse_rules,
    route_event,
)

EXIT_OK, EXIT_INVALID = 0, 1
_EVENT_SUFFIXES = {".ndjson", ".jsonl", ".json"}


def register(subparsers: Any) -> None:
    """Add `rules check`."""
    rules = subparsers.add_parser("rules", help="governance rules (docs/governance.md)")
    commands = rules.add_subparsers(dest="rules_command", required=True, metavar="COMMAND")
    check = commands.add_parser("check", help="dry-run the rules on DTN files or NDJSON events; print decisions")
    check.add_argument("--config", type=Path, required=True, metavar="FILE", help="the bridge configuration")
    check.add_argument("--direction", choices=("inbound", "outbound"), default="inbound",
                       help="direction of the events in NDJSON inputs (DTN files are always inbound)")
    check.add_argument("--json", action="store_true", help="one JSON object per decision instead of text")
    check.add_argument("inputs", nargs="*", type=input_file, metavar="FILE|EVENTS.ndjson",
                       help="DTN files or NDJSON events ('-' for stdin); none: only check the rules themselves")
    check.set_defaults(run=run_check)


def load_rules(path: Path) -> tuple[BridgeConfig, RuleSet]:
    """The configuration and its compiled rules."""
    config, raw = _load_config(path)
    definitions = load_definitions(config.flows.definitions)
    source = str(config.source) if config.source else str(path)
    rules = parse_rules(raw, participant_id=config.participant.id, participant_role=config.participant.role,
                        definitions=definitions, source=source)
    return config, rules


def _load_config(path: Path) -> tuple[BridgeConfig, Mapping[str, Any] | None]:
    """The configuration and its raw `rules:` mapping (validated by parse_rules)."""
    config = load_config(path)
    return config, config.rules


def run_check(args: argparse.Namespace) -> int:
    """Print each decision; exit 1 when anything is rejected or a file is invalid."""
    config, rules = load_rules(args.config)
    assert rules.definitions is not None  # parse_rules always keeps them
    reader = FlowFileReader(rules.definitions, strict=config.flows.strict, checks=config.checks.severities)
    printer = _Printer(args.json)
    if not args.inputs:
        print(f"{args.config}: rules valid ({len(rules.subscribers)} subscriber routes)")
        return EXIT_OK
    for name in args.inputs:
        with ExitStack() as stack:  # stdin: copied to a temporary file, read twice like a file
            path = stack.enter_context(spooled_stdin()) if is_stdin(name) else name
            _check_input(args, name, path, reader, rules, printer)
    return EXIT_INVALID if printer.failed else EXIT_OK


def _check_input(args: argparse.Namespace, name: Path, path: Path, reader: FlowFileReader, rules: RuleSet,
                 printer: _Printer) -> None:
    """The decisions on one input, `name` as the command line named it, read from `path`."""
    if _is_events(path):
        for number, event in read_events(path, name):
            printer.event(f"{name} line {number}", route_event(event, args.direction, rules))
        return
    checked = check_file(path, reader)
    if not checked.ok or checked.header is None:
        printer.failed += 1
        for line in checked.describe_defects():
            print(f"{name}: {line}", file=sys.stderr)
        return
    facts = FileFacts.from_header(checked.header, size=os.path.getsize(path), flow_count=checked.flow_count)
    decision = decide_inbound_file(facts, rules)
    printer.decision(f"{name} file", decision)
    if not decision.accepted:
        return
    for event in file_events(path, reader, checked):
        printer.event(f"{name} #{event.get('dtcindex')}", route_event(event, "inbound", rules))


class _Printer:
    """Decisions as text lines or NDJSON; counts the rejections."""

    def __init__(self, as_json: bool) -> None:
        self.as_json = as_json
        self.failed = 0

    def decision(self, where: str, decision: Decision, outputs: list[dict[str, Any]] | None = None) -> None:
        if not decision.accepted:
            self.failed += 1
        if self.as_json:
            record: dict[str, Any] = {
                "input": where, "rule": decision.rule, "outcome": decision.outcome,
                "direction": decision.direction, "flow": decision.flow, "participant": decision.participant,
                "test": decision.test, "reason": decision.reason,
            }
            if outputs is not None:
                record["outputs"] = outputs
            sys.stdout.buffer.write(orjson.dumps(record) + b"\n")
            sys.stdout.flush()
            return
        test = " test" if decision.test else ""
        line = (f"{where}: {decision.outcome.upper()} {decision.rule} {decision.direction} {decision.flow or '-'} "
                f"{decision.participant or '-'}{test}: {decision.reason}")
        if outputs:
            line += " -> " + ", ".join(
                (f"{output['exchange']}:" if output["exchange"] else "") + output["routing_key"]
                + (f" (route {output['route']}, redacted {output['redacted'] or 'nothing'})" if output["route"]
                   else "")
                for output in outputs)
        print(line)

    def event(self, where: str, decision: EventDecision) -> None:
        outputs = [{"routing_key": output.routing_key, "exchange": output.exchange, "route": output.route,
                    "redacted": output.event.get(REDACTED_ATTRIBUTE, "") if output.route else None}
                   for output in decision.outputs]
        self.decision(where, decision, outputs)


def _is_events(path: Path) -> bool:
    if path.suffix.lower() in _EVENT_SUFFIXES:
        return True
    with open(path, "rb") as stream:
        return stream.read(64).lstrip().startswith(b"{")
