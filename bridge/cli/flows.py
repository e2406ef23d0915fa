"""Commands of the flow engine: parse, validate, render, flows, schemas."""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path
from typing import Any, BinaryIO

import orjson

from bridge.cli.ndjson import read_events
from bridge.cli.progress import Progress, input_file, is_stdin, spooled_stdin
from bridge.dtn.checks import severities
from bridge.dtn.definitions import DefinitionSet, load_definitions
from bridge.dtn.reader import FileParse, FlowFileReader
from bridge.events.envelope import render_events
from bridge.events.schema import flow_schema, manifest_schema
from bridge.inbound.flowfile import check_file, check_stream, file_events

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
    parse.add_argument("files", nargs="+", type=input_file, metavar="FILE", help="'-' for stdin")
    parse.add_argument("-o", "--output", type=Path, help="write the events here instead of stdout")
    parse.add_argument("--sign-key", type=Path, metavar="KEY", help="sign every event with this PKCS#8 key")
    parse.set_defaults(run=run_parse)

    validate = subparsers.add_parser("validate", parents=[common, checking],
                                     help="check DTN files; exit 1 on any defect")
    validate.add_argument("files", nargs="+", type=input_file, metavar="FILE", help="'-' for stdin")
    validate.add_argument("--json", action="store_true",
                          help="on stdout, one JSON object per defect and warning, then one per file")
    validate.set_defaults(run=run_validate)

    render = subparsers.add_parser("render", parents=[common], help="NDJSON events of one file -> a DTN file")
    render.add_argument("events", nargs="?", default="-", type=input_file, metavar="EVENTS.ndjson",
                        help="'-' for stdin (default)")
    render.add_argument("-o", "--output", type=Path, help="write the file here instead of stdout")
    render.set_defaults(run=run_render)

    flows = subparsers.add_parser("flows", parents=[common], help="list the known flow definitions")
    flows.set_defaults(run=run_flows)

    schemas = subparsers.add_parser("schemas", parents=[common], help="write a JSON Schema per flow's events")
    schemas.add_argument("--out", type=Path, required=True, metavar="DIR")
    schemas.set_defaults(run=run_schemas)

    asyncapi = subparsers.add_parser("asyncapi", parents=[common],
                                     help="the AsyncAPI 3.0 document of the channels the bridge uses")
    asyncapi.add_argument("--out", type=Path, metavar="FILE", help="write here (.yaml/.yml: YAML; else JSON); "
                                                                   "default stdout")
    asyncapi.add_argument("--config", type=Path, metavar="FILE",
                          help="describe this configuration's topology (default: the default names)")
    asyncapi.add_argument("--check", action="store_true", help="exit 1 if --out differs from what would be written")
    asyncapi.set_defaults(run=run_asyncapi)


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


def _report_json(path: Path, checked: FileParse) -> None:
    """`validate --json`: one object per defect (`severity` error) and warning, then the file's own object."""
    flow = checked.flow_reference
    for severity, defects, truncated in (("error", checked.defects, checked.defects_truncated),
                                         ("warning", checked.warnings, checked.warnings_truncated)):
        for defect in defects:
            _json_line({"file": str(path), "severity": severity, "flow": flow, **defect.as_dict(),
                        "text": defect.describe(flow)})
        if truncated:
            _json_line({"file": str(path), "severity": severity, "flow": flow, "rule": "truncated",
                        "message": f"more not listed (limit {checked.max_defects})"})
    _json_line({"file": str(path), "valid": checked.ok, "flow": flow,
                "flow_count": checked.flow_count if checked.ok else None,
                "group_count": checked.group_count if checked.ok else None,
                "defects": len(checked.defects), "warnings": len(checked.warnings)})


def _json_line(record: dict[str, Any]) -> None:
    sys.stdout.buffer.write(orjson.dumps(record) + b"\n")


def _check(path: Path, reader: FlowFileReader, name: Path | None = None) -> FileParse:
    """The first pass over a file, or over stdin as it streams in; a progress line on a terminal naming `name`."""
    with Progress(f"checking {name or path}", None if is_stdin(path) else os.path.getsize(path)) as progress:
        if is_stdin(path):
            return check_stream(sys.stdin.buffer, reader, on_read=progress.advance)
        return check_file(path, reader, on_read=progress.advance)


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
        checked = _check(path, reader)
        if args.json:
            _report_json(path, checked)
            invalid += not checked.ok
            continue
        _report(path, checked)
        if checked.ok:
            warned = f", {len(checked.warnings)} warnings" if checked.warnings else ""
            print(f"{path}: valid {checked.flow_reference}, {checked.flow_count} flow instances, "
                  f"{checked.group_count} groups{warned}")
            continue
        invalid += 1
    if len(args.files) > 1 and not args.json:
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
        for name in args.files:
            with ExitStack() as stack:
                # Stdin is read twice (check, then events): copied to a temporary file first, never held in memory
                path = stack.enter_context(spooled_stdin()) if is_stdin(name) else name
                checked = _check(path, reader, name)
                _report(name, checked)
                if not checked.ok:
                    invalid += 1
                    continue
                with Progress(f"parsing {name}", os.path.getsize(path)) as progress:
                    for event in file_events(path, reader, checked, on_read=progress.advance):
                        out.write(orjson.dumps(sign(event) if sign else event) + b"\n")
    return EXIT_INVALID if invalid else EXIT_OK


MANIFEST_SCHEMA_NAME = "file.received.v1"
RENDER_HOLD_BYTES = 1 << 20  # stdout gets nothing of a file whose events are refused within its first MiB


def run_render(args: argparse.Namespace) -> int:
    """Write the DTN file the events came from, streaming; nothing is written under the output name if they are
    wrong. On stdout the first MiB is held back, so a refused small file prints nothing; a larger one may leave its
    first lines, never its trailer (never a whole file), and the exit status says it failed."""
    lines = render_events((event for _number, event in read_events(args.events)), _definitions(args))
    if args.output is None:
        out = sys.stdout.buffer
        held: list[bytes] = []
        size = 0
        for line in lines:
            data = line.encode("utf-8")
            held.append(data)
            size += len(data)
            if size >= RENDER_HOLD_BYTES:
                out.write(b"".join(held))
                held, size = [], 0
        out.write(b"".join(held))
        out.flush()
        return EXIT_OK
    from bridge.adapters.spool import write_atomic

    write_atomic(args.output, (line.encode("utf-8") for line in lines))
    return EXIT_OK


def run_flows(args: argparse.Namespace) -> int:
    """One line per known flow definition."""
    definitions = _definitions(args)
    for reference in definitions:  # outlines: reading 200+ definitions whole to list them takes a second
        name, groups, levels, _routes = definitions.outline(reference)
        event_type = f"uk.dtc.{reference[:5]}.v{reference[5:]}"
        print(f"{reference}  {event_type:<20} {groups:>3} groups, {levels} levels  {name}")
    return EXIT_OK


def run_schemas(args: argparse.Namespace) -> int:
    """Write `<flow><version>.schema.json` for every definition, and `file.received.v1.schema.json`."""
    args.out.mkdir(parents=True, exist_ok=True)
    schemas = {reference: flow_schema(definition) for reference, definition in _definitions(args).items()}
    schemas[MANIFEST_SCHEMA_NAME] = manifest_schema()
    for name, schema in schemas.items():
        (args.out / f"{name}.schema.json").write_bytes(orjson.dumps(schema, option=orjson.OPT_INDENT_2) + b"\n")
    print(f"wrote {len(schemas)} schemas to {args.out}")
    return EXIT_OK


def run_asyncapi(args: argparse.Namespace) -> int:
    """Write (or with --check compare) the AsyncAPI document of the default topology or a configuration's."""
    from bridge.adapters.rabbitmq.topology import Topology
    from bridge.asyncapi import asyncapi_document

    definitions = _definitions(args)
    topology = Topology()
    if args.config is not None:
        from bridge.config import load_config
        from bridge.service import topology_for

        config = load_config(args.config)
        topology = topology_for(config)
        definitions = load_definitions(args.definitions or config.flows.definitions)
    document = asyncapi_document(definitions, topology)
    if args.out is not None and args.out.suffix in (".yaml", ".yml"):
        import yaml

        text = yaml.dump(document, Dumper=getattr(yaml, "CSafeDumper", yaml.SafeDumper), sort_keys=False,
                         allow_unicode=True, width=120).encode("utf-8")
    else:
        text = orjson.dumps(document, option=orjson.OPT_INDENT_2) + b"\n"
    if args.check:
        if args.out is None or not args.out.is_file() or args.out.read_bytes() != text:
            print(f"dtn-bridge: {args.out}: not current; run `dtn-bridge asyncapi --out {args.out}`", file=sys.stderr)
            return EXIT_INVALID
        return EXIT_OK
    if args.out is None:
        sys.stdout.buffer.write(text)
        return EXIT_OK
    args.out.write_bytes(text)
    print(f"wrote {args.out}: {len(document['channels'])} channels, {len(document['components']['messages'])} "
          "messages", file=sys.stderr)
    return EXIT_OK
