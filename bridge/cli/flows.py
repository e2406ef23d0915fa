"""Commands of the flow engine: parse, validate, render, flows, schemas."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, BinaryIO

import orjson

from bridge.cli.ndjson import read_events
from bridge.dtn.checks import severities
from bridge.dtn.definitions import DefinitionSet, load_definitions
from bridge.dtn.reader import FileParse, FlowFileReader
from bridge.events.envelope import render_events
from bridge.events.schema import flow_schema
from bridge.inbound.flowfile import check_file, file_events

EXIT_OK, EXIT_INVALID = 0, 1


def register(subparsers: Any) -> None:
    """Add the flow engine's commands."""
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--definitions", type=Path, action="append", default=[], metavar="DIR",
                        help="a folder of flow definitions that take precedence over the shipped ones "
                             "(repeatable: the first folder wins)")
    common.add_argument("--strict", action="store_true",
                        help="enforce the DTC ranges even where real files break them (see lenient_range)")

    checking = argparse.ArgumentParser(add_help=False)
    checking.add_argument("--check", action="append", type=_check_option, default=[], metavar="NAME=SEVERITY",
                          help="set a named check to error, warn or off (mpan_check_digit, settlement_periods; "
                               "default error); repeatable")

    parse = subparsers.add_parser("parse", parents=[common, checking], help="DTN files -> NDJSON CloudEvents")
    parse.add_argument("files", nargs="+", type=Path, metavar="FILE")
    parse.add_argument("-o", "--output", type=Path, help="write the events here instead of stdout")
    parse.add_argument("--sign-key", type=Path, metavar="KEY", help="sign every event with this PKCS#8 key")
    parse.set_defaults(run=run_parse)

    validate = subparsers.add_parser("validate", parents=[common, checking],
                                     help="check DTN files; exit 1 on any defect")
    validate.add_argument("files", nargs="+", type=Path, metavar="FILE")
    validate.set_defaults(run=run_validate)

    render = subparsers.add_parser("render", parents=[common], help="NDJSON events of one file -> a DTN file")
    render.add_argument("events", nargs="?", default="-", metavar="EVENTS.ndjson", help="'-' for stdin (default)")
    render.add_argument("-o", "--output", type=Path, help="write the file here instead of stdout")
    render.set_defaults(run=run_render)

    flows = subparsers.add_parser("flows", parents=[common], help="list the known flow definitions")
    flows.set_defaults(run=run_flows)

    schemas = subparsers.add_parser("schemas", parents=[common], help="write a JSON Schema per flow's events")
    schemas.add_argument("--out", type=Path, required=True, metavar="DIR")
    schemas.set_defaults(run=run_schemas)


def _definitions(args: argparse.Namespace) -> DefinitionSet:
    return load_definitions(args.definitions)


def _check_option(text: str) -> tuple[str, str]:
    """`NAME=SEVERITY`, both known: a wrong one is a usage error (exit 2) naming what is known."""
    name, _, severity = text.partition("=")
    try:
        severities({name: severity})
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None
    return name, severity


def _reader(args: argparse.Namespace) -> FlowFileReader:
    return FlowFileReader(_definitions(args), strict=args.strict, checks=dict(args.check))


def _report(path: Path, checked: FileParse) -> None:
    """Every defect, then every warning (a check set to warn), one per line on stderr."""
    for line in checked.describe_defects():
        print(f"{path}: {line}", file=sys.stderr)
    for line in checked.describe_warnings():
        print(f"{path}: warning: {line}", file=sys.stderr)


@contextmanager
def _binary_output(path: Path | None) -> Iterator[BinaryIO]:
    if path is None:
        yield sys.stdout.buffer
        sys.stdout.flush()
        return
    with open(path, "wb") as stream:
        yield stream


def run_validate(args: argparse.Namespace) -> int:
    """Print every defect of every file; exit 1 when any file has one."""
    reader = _reader(args)
    invalid = 0
    for path in args.files:
        checked = check_file(path, reader)
        _report(path, checked)
        if checked.ok:
            warned = f", {len(checked.warnings)} warnings" if checked.warnings else ""
            print(f"{path}: valid {checked.flow_reference}, {checked.flow_count} flow instances, "
                  f"{checked.group_count} groups{warned}")
            continue
        invalid += 1
    if len(args.files) > 1:
        print(f"{len(args.files) - invalid} valid, {invalid} invalid")
    return EXIT_INVALID if invalid else EXIT_OK


def run_parse(args: argparse.Namespace) -> int:
    """Write the events of every valid file as NDJSON; report the defects of the others."""
    reader = _reader(args)
    sign = None
    if args.sign_key is not None:
        from bridge.signing import Signer

        sign = Signer.from_key_file(args.sign_key).sign
    invalid = 0
    with _binary_output(args.output) as out:
        for path in args.files:
            checked = check_file(path, reader)
            _report(path, checked)
            if not checked.ok:
                invalid += 1
                continue
            for event in file_events(path, reader, checked):
                out.write(orjson.dumps(sign(event) if sign else event) + b"\n")
    return EXIT_INVALID if invalid else EXIT_OK


def run_render(args: argparse.Namespace) -> int:
    """Write the DTN file the events came from; nothing is written under the output name if they are wrong."""
    lines = render_events((event for _number, event in read_events(args.events)), _definitions(args))
    if args.output is None:
        text = "".join(lines)  # render fully first, so that an error leaves no half file on stdout
        sys.stdout.buffer.write(text.encode("utf-8"))
        return EXIT_OK
    from bridge.adapters.spool import write_atomic

    write_atomic(args.output, (line.encode("utf-8") for line in lines))
    return EXIT_OK


def run_flows(args: argparse.Namespace) -> int:
    """One line per known flow definition."""
    definitions = _definitions(args)
    for reference in definitions:  # outlines: compiling 200+ definitions to list them would take seconds
        name, groups, levels, _routes = definitions.outline(reference)
        event_type = f"uk.dtc.{reference[:5]}.v{reference[5:]}"
        print(f"{reference}  {event_type:<20} {groups:>3} groups, {levels} levels  {name}")
    return EXIT_OK


def run_schemas(args: argparse.Namespace) -> int:
    """Write `<flow><version>.schema.json` for every definition."""
    args.out.mkdir(parents=True, exist_ok=True)
    for reference, definition in _definitions(args).items():
        target = args.out / f"{reference}.schema.json"
        target.write_bytes(orjson.dumps(flow_schema(definition), option=orjson.OPT_INDENT_2) + b"\n")
    print(f"wrote {len(_definitions(args))} schemas to {args.out}")
    return EXIT_OK
