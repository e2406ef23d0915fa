"""`dtn-bridge definitions import`: the DTC catalogue documents -> flow definitions (and what changed)."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

import yaml

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
    importer.add_argument("flow_catalogue", type=Path, metavar="FLOW_CATALOGUE.docx")
    importer.add_argument("item_catalogue", type=Path, metavar="ITEM_CATALOGUE.docx")
    importer.add_argument("--domains", type=Path, metavar="DOMAINS.docx", help="fills formats items leave blank")
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
    for path in (args.flow_catalogue, args.item_catalogue, args.domains):
        if path is not None and not path.is_file():
            raise CatalogueError(f"{path}: no such file")
    overlays_dir = args.overlays or (args.out / "curated" if args.out is not None else None)
    if args.overlays is not None and not args.overlays.is_dir():
        raise CatalogueError(f"{args.overlays}: no such folder of overlays")
    overlays = _read_folder(overlays_dir) if overlays_dir is not None and overlays_dir.is_dir() else {}
    result = import_catalogue(read_tables(args.flow_catalogue), read_tables(args.item_catalogue),
                              read_tables(args.domains) if args.domains else [], overlays)
    if not result.documents:
        raise CatalogueError(f"{args.flow_catalogue}: no flow version found (is it the Data Flow Catalogue?)")
    texts = {reference: dump(document, result.release) for reference, document in result.documents.items()}
    for reference, why in _invalid(texts, load_definition).items():
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


def _invalid(texts: dict[str, str], load: Any) -> dict[str, str]:
    """The generated texts the loader refuses (e.g. a 2-character group code in the catalogue), and why."""
    import tempfile

    from bridge.errors import FlowDefinitionError

    refused: dict[str, str] = {}
    with tempfile.TemporaryDirectory() as folder:
        for reference, text in texts.items():
            path = Path(folder) / f"{reference}.yaml"
            path.write_text(text, encoding="utf-8")
            try:
                load(path)
            except FlowDefinitionError as exc:
                refused[reference] = f"the definition would be invalid: {exc.key}: {exc.message}"
    return refused
