"""`dtn-bridge definitions import`: the DTC catalogue documents -> flow definitions (and what changed)."""

from __future__ import annotations

import argparse
import sys
from contextlib import ExitStack
from pathlib import Path
from typing import Any

import yaml

from bridge.cli.progress import Progress, input_file, is_stdin, spooled_stdin
from bridge.errors import CatalogueError

EXIT_OK, EXIT_USAGE = 0, 2


def register(subparsers: Any) -> None:
    """Add `definitions import`."""
    definitions = subparsers.add_parser("definitions", help="manage flow definitions")
    commands = definitions.add_subparsers(dest="definitions_command", required=True, metavar="COMMAND")
    importer = commands.add_parser(
        "import", help="DTC Word documents -> one flow definition per operational flow version",
        description="Read the DTC Data Flow Catalogue and Data Item Catalogue (and Domains) and write one "
                    "definition per operational flow version, merging the curated overlays of OUT/curated/.")
    importer.add_argument("flow_catalogue", type=input_file, metavar="FLOW_CATALOGUE.docx", help="'-' for stdin")
    importer.add_argument("item_catalogue", type=input_file, metavar="ITEM_CATALOGUE.docx", help="'-' for stdin")
    importer.add_argument("--domains", type=input_file, metavar="DOMAINS.docx",
                          help="fills formats items leave blank")
    importer.add_argument("--out", type=Path, metavar="DIR", help="write the definitions here")
    importer.add_argument("--overlays", type=Path, metavar="DIR",
                          help="curated overlays merged over the catalogue (default: OUT/curated when it exists)")
    importer.add_argument("--compare", type=Path, metavar="DIR",
                          help="print what changed against this folder of definitions (before writing)")
    importer.set_defaults(run=run_import)


def _read_folder(folder: Path) -> dict[str, dict[str, Any]]:
    documents: dict[str, dict[str, Any]] = {}
    for path in sorted(folder.glob("*.yaml")):
        try:
            document = yaml.safe_load(path.read_text(encoding="utf-8"))
        except yaml.YAMLError as exc:
            raise CatalogueError(f"{path}: not valid YAML: {exc}") from exc
        if not isinstance(document, dict) or "groups" not in document:
            raise CatalogueError(f"{path}: not a flow definition")
        documents[path.stem] = document
    return documents


def run_import(args: argparse.Namespace) -> int:
    """Import, validate every result with the loader, then compare and/or write (only files whose text changed)."""
    from bridge.adapters.docx_tables import read_tables
    from bridge.dtn.catalogue import compare, dump, import_catalogue
    from bridge.dtn.definitions import load_definition

    if args.out is None and args.compare is None:
        print("dtn-bridge: definitions import: give --out DIR, --compare DIR or both", file=sys.stderr)
        return EXIT_USAGE
    if [args.flow_catalogue, args.item_catalogue, args.domains].count(Path("-")) > 1:
        print("dtn-bridge: definitions import: only one document can come from stdin ('-')", file=sys.stderr)
        return EXIT_USAGE
    overlays_dir = args.overlays or (args.out / "curated" if args.out is not None else None)
    if args.overlays is not None and not args.overlays.is_dir():
        raise CatalogueError(f"{args.overlays}: no such folder of overlays")
    overlays = _read_folder(overlays_dir) if overlays_dir is not None and overlays_dir.is_dir() else {}
    documents = [args.flow_catalogue, args.item_catalogue, *([args.domains] if args.domains else [])]
    with ExitStack() as stack, Progress("importing", len(documents) + 2, unit="steps") as progress:
        tables = []
        for document in documents:  # the Word documents take seconds each to read
            progress.update(progress.done, f"reading {document}")
            # A .docx is a zip, read by seeking: stdin is copied to a temporary file first
            tables.append(read_tables(stack.enter_context(spooled_stdin()) if is_stdin(document) else document))
            progress.advance(1)
        result = import_catalogue(tables[0], tables[1], tables[2] if args.domains else [], overlays)
        progress.advance(1)
        if not result.documents:
            raise CatalogueError(f"{args.flow_catalogue}: no flow version found (is it the Data Flow Catalogue?)")
        texts = {reference: dump(document, result.release) for reference, document in result.documents.items()}
        invalid = _invalid(texts, load_definition, progress)
    for reference, why in invalid.items():
        del texts[reference], result.documents[reference]
        result.skipped[reference] = why
    for reference, why in result.skipped.items():
        print(f"{reference}: not imported: {why}", file=sys.stderr)
    if args.compare is not None:
        for line in compare(result.documents, _read_folder(args.compare)):
            print(line)
    if args.out is not None:
        args.out.mkdir(parents=True, exist_ok=True)
        changed = 0
        for reference, text in texts.items():
            target = args.out / f"{reference}.yaml"
            if not target.is_file() or target.read_text(encoding="utf-8") != text:
                target.write_text(text, encoding="utf-8")
                changed += 1
        print(f"{len(texts)} definitions ({len(overlays)} overlays) from DTC {result.release}: {changed} written "
              f"to {args.out}, {len(result.skipped)} not imported", file=sys.stderr)
    return EXIT_OK


def _invalid(texts: dict[str, str], load: Any, progress: Progress) -> dict[str, str]:
    """The generated texts the loader refuses (e.g. a 2-character group code in the catalogue), and why."""
    import tempfile

    from bridge.errors import FlowDefinitionError

    refused: dict[str, str] = {}
    with tempfile.TemporaryDirectory() as folder:
        for number, (reference, text) in enumerate(texts.items(), 1):
            progress.update(progress.done, f"checking definition {number} of {len(texts)}")
            path = Path(folder) / f"{reference}.yaml"
            path.write_text(text, encoding="utf-8")
            try:
                load(path)
            except FlowDefinitionError as exc:
                refused[reference] = f"the definition would be invalid: {exc.key}: {exc.message}"
    return refused
