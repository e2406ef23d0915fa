"""Word documents -> their tables as rows of cell texts: the file half of `dtn-bridge definitions import`.

python-docx is an optional extra (`pip install 'dtn-bridge[import]'`): the daemon never imports this module.
"""

from __future__ import annotations

import zipfile
from pathlib import Path

from bridge.errors import CatalogueError

INSTALL_HINT = "the importer needs python-docx: pip install 'dtn-bridge[import]' (or: pip install python-docx)"


def read_tables(path: Path) -> list[list[list[str]]]:
    """Every table of the document, in document order: rows of cell texts (merged cells repeat their text)."""
    try:
        import docx
        from docx.opc.exceptions import PackageNotFoundError
    except ModuleNotFoundError as exc:
        raise CatalogueError(INSTALL_HINT) from exc
    try:
        document = docx.Document(str(path))
    except (PackageNotFoundError, zipfile.BadZipFile, KeyError, ValueError) as exc:
        raise CatalogueError(f"{path}: not a Word .docx document ({exc})") from exc
    return [[[cell.text for cell in row.cells] for row in table.rows] for table in document.tables]
