"""`dtn-bridge definitions import` on small .docx documents built in the real catalogue's table layout, and (when
they are on this machine) on the real DTC 15.4 documents."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from bridge.cli import main
from bridge.dtn.definitions import load_definitions
from tests.conftest import REPO, curated_definitions
from tests.dtc_documents import (
    REAL_DOCUMENTS,
    Flow,
    Item,
    group,
    item,
    write_domains,
    write_flow_catalogue,
    write_item_catalogue,
)

ITEMS = [
    Item("J0003", "MPAN Core", "NUM(13)", domain="Identifier", physical_length="13"),
    Item("J0040", "Register Reading", "NUM(9 ,1)", ["Zero or positive integer within the constraints of the format."],
         domain="Meter Value", physical_length="10"),
    Item("J0171", "Reading Type", "CHAR(1)", ["A - Actual Change of Supplier Read", "F - Final"]),
    Item("J0084", "Supplier Id", ""),
    Item("J0012", "Additional Information", "CHAR(200)", ["Free text"]),
    Item("J0016", "Reading Date & Time", "", domain="DateTime"),
    Item("J0024", "Site Visit Check Code", "CHAR(2)", ["01 - Site occupied", "02 - Site not occupied"]),
]
READINGS = Flow("D0901", "001", "Readings For Tests", [("Supplier", "HHDC"), ("NHHDA", "Supplier"),
                                                         ("ADSA", "Supplier"), ("Supplier", "HHDC")], [
    group("AAA", "Metering Points", "1-*", 1),
    item(2, "1", "J0003", "MPAN Core", "NUM(13)"),
    item(2, "O", "J0084", "Supplier Id", "(0)"),
    group("BBB", "Site Visit", "0-*", 2, "If a visit was made"),
    item(3, "1", "J0024", "Site Visit Check Code", "CHAR(2)"),
    item(3, "O", "J0012", "Additional Information", "CHAR(200)"),
    group("CCC", "Registers", "1-*", 2),
    item(3, "1", "J0040", "Register Reading", "NUM(9)"),
    item(3, "1", "J0171", "Reading Type", "CHAR(1)"),
    item(3, "O", "J0016", "Reading Date & Time", "(0)"),
    item(3, "N", "J0012", "Additional Information", "CHAR(200)"),
    group("BBB", "Site Visit", "0-1", 3),
    item(4, "1", "J0024", "Site Visit Check Code", "CHAR(2)"),
])
RETIRED = Flow("D0902", "001", "Retired For Tests", [("Supplier", "MOP")],
               [group("ZZZ", "Only", "1", 1), item(2, "1", "J0003", "MPAN Core", "NUM(13)")], status="Retired")
BROKEN = Flow("D0903", "001", "Broken For Tests", [("Supplier", "MOP")],
              [group("DA", "Two characters", "1", 1), item(2, "1", "J0003", "MPAN Core", "NUM(13)")])


def documents(folder: Path, flows: list[Flow] | None = None, items: list[Item] | None = None) -> list[str]:
    folder.mkdir(parents=True, exist_ok=True)
    return [str(write_flow_catalogue(folder / "flows.docx", flows or [READINGS, RETIRED, BROKEN])),
            str(write_item_catalogue(folder / "items.docx", items or ITEMS)),
            "--domains", str(write_domains(folder / "domains.docx", {"DateTime": "DATETIME", "Code": "CHAR(n)"}))]


def imported(out: Path, reference: str = "D0901001") -> dict[str, Any]:
    document: dict[str, Any] = yaml.safe_load((out / f"{reference}.yaml").read_text())
    return document


def by_code(document: dict[str, Any]) -> dict[str, list[dict[str, Any]]]:
    groups: dict[str, list[dict[str, Any]]] = {}
    for entry in document["groups"]:
        groups.setdefault(entry["code"], []).append(entry)
    return groups


def items_of(entry: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {value["ref"]: value for value in entry["items"]}


@pytest.fixture(scope="module")
def docs(tmp_path_factory: pytest.TempPathFactory) -> list[str]:
    return documents(tmp_path_factory.mktemp("dtc"))


class TestImport:
    def test_structure_formats_and_routes(self, docs: list[str], tmp_path: Path,
                                          capsys: pytest.CaptureFixture[str]) -> None:
        """Groups, parents, ranges and conditions from the flow table; formats from the item catalogue first;
        routes as role codes; what cannot be imported is named, the rest is written and loads."""
        assert main(["definitions", "import", *docs, "--out", str(tmp_path)]) == 0
        err = capsys.readouterr().err
        assert "D0902001: not imported: status Retired" in err
        assert "D0903001: not imported: the definition would be invalid: groups[0].code: 'DA' is not a 3-character" \
            in err
        assert sorted(path.name for path in tmp_path.glob("*.yaml")) == ["D0901001.yaml"]
        document = imported(tmp_path)
        groups = by_code(document)
        assert [(g["code"], g["parent"], g["range"]) for g in document["groups"]] == [
            ("AAA", None, "1-*"), ("BBB", "metering_points", "0-*"), ("CCC", "metering_points", "1-*"),
            ("BBB", "registers", "0-1")]
        assert groups["BBB"][0]["note"] == "Condition (15.4): If a visit was made"
        registers = items_of(groups["CCC"][0])
        assert registers["J0040"]["format"] == "NUM(9,1)"  # the item catalogue's, not the flow table's NUM(9)
        assert registers["J0016"]["format"] == "DATETIME" and "from domain DateTime" in registers["J0016"]["note"]
        assert registers["J0012"]["presence"] == "unused"
        assert registers["J0171"]["values"] == {"A": "Actual Change of Supplier Read", "F": "Final"}
        assert "values" not in registers["J0040"]  # a free-text valid set is no enumeration
        assert "values" not in items_of(groups["BBB"][0])["J0012"]
        supplier = items_of(groups["AAA"][0])["J0084"]
        assert supplier["format"] == "CHAR(255)" and supplier["note"].startswith("Format blank in DTC 15.4")
        assert items_of(groups["AAA"][0])["J0003"]["checks"] == ["mpan_check_digit"]
        assert document["routes"] == [
            {"from": "X", "to": "C"},
            {"from": "B", "to": "X", "note": "NHHDA = B is an uncertain mapping (docs/flow-roles.md)"}]
        definition = load_definitions(tmp_path)["D0901001"]
        assert definition.routes == (("X", "C"), ("B", "X"))

    def test_repeated_group_code(self, docs: list[str], tmp_path: Path) -> None:
        """A code that stands twice (as in D0030, D0209, D0401) gives two groups with unique keys, each under its
        own parent."""
        assert main(["definitions", "import", *docs, "--out", str(tmp_path)]) == 0
        first, second = by_code(imported(tmp_path))["BBB"]
        assert (first["key"], first["parent"]) == ("site_visit", "metering_points")
        assert (second["key"], second["parent"]) == ("site_visit_bbb", "registers")
        definition = load_definitions(tmp_path)["D0901001"]
        assert [g.parent.key for g in definition.groups if g.code == "BBB" and g.parent] == ["metering_points",
                                                                                            "registers"]

    def test_deterministic(self, docs: list[str], tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
        """The same documents give the same bytes; a second import into the same folder rewrites nothing."""
        assert main(["definitions", "import", *docs, "--out", str(tmp_path / "a")]) == 0
        assert main(["definitions", "import", *docs, "--out", str(tmp_path / "b")]) == 0
        assert (tmp_path / "a" / "D0901001.yaml").read_bytes() == (tmp_path / "b" / "D0901001.yaml").read_bytes()
        capsys.readouterr()
        assert main(["definitions", "import", *docs, "--out", str(tmp_path / "a")]) == 0
        assert "0 written" in capsys.readouterr().err

    def test_document_from_stdin(self, docs: list[str], tmp_path: Path) -> None:
        """`-` reads one document from stdin (copied to a temporary file: a .docx is a zip, read by seeking)."""
        assert main(["definitions", "import", *docs, "--out", str(tmp_path / "a")]) == 0
        with open(docs[0], "rb") as document:
            result = subprocess.run([sys.executable, "-m", "bridge", "definitions", "import", "-", *docs[1:], "--out",
                                     str(tmp_path / "b")], stdin=document, capture_output=True, check=False)
        assert result.returncode == 0, result.stderr
        assert (tmp_path / "a" / "D0901001.yaml").read_bytes() == (tmp_path / "b" / "D0901001.yaml").read_bytes()

    def test_overlay_survives_reimport(self, docs: list[str], tmp_path: Path) -> None:
        """What we know beyond the catalogue lives in curated/: keys, lenient ranges, notes, checks and a format for
        a blank item win over the catalogue, on every import."""
        (tmp_path / "curated").mkdir(parents=True)
        (tmp_path / "curated" / "D0901001.yaml").write_text(yaml.safe_dump({
            "flow": "D0901", "version": "001", "name": "Readings For Tests",
            "groups": [
                {"code": "AAA", "key": "mpan_cores",
                 "items": [{"ref": "J0084", "key": "supplier", "format": "CHAR(4)",
                            "note": "CHAR(4): a market participant id."}]},
                {"code": "BBB"},
                {"code": "CCC", "lenient_range": "0-*", "lenient_reason": "real files leave it out",
                 "items": [{"ref": "J0171", "format": "CHAR(1)"},
                           {"ref": "J0016", "key": "settlement_date", "format": "DATE",
                            "note": "a date for the test"}]},
                {"code": "BBB", "key": "register_visit",
                 "checks": [{"name": "settlement_periods", "date_item": "settlement_date", "clock": "utc"}]}]}))
        for _ in range(2):
            assert main(["definitions", "import", *docs, "--out", str(tmp_path)]) == 0
            document = imported(tmp_path)
            groups = by_code(document)
            assert groups["AAA"][0]["key"] == "mpan_cores"
            assert groups["BBB"][1]["checks"] == [{"name": "settlement_periods", "date_item": "settlement_date",
                                                   "clock": "utc"}]
            assert items_of(groups["CCC"][0])["J0016"]["key"] == "settlement_date"
            assert items_of(groups["AAA"][0])["J0084"] == {
                "ref": "J0084", "key": "supplier", "name": "Supplier Id", "format": "CHAR(4)", "presence": "optional",
                "note": "CHAR(4): a market participant id."}
            assert items_of(groups["AAA"][0])["J0003"]["checks"] == ["mpan_check_digit"]
            assert groups["CCC"][0]["lenient_range"] == "0-*"
            assert "values" not in items_of(groups["CCC"][0])["J0171"]  # a curated format brings its own valid set
            assert [(g["key"], g["parent"]) for g in document["groups"]] == [
                ("mpan_cores", None), ("site_visit", "mpan_cores"), ("registers", "mpan_cores"),
                ("register_visit", "registers")]
            load_definitions(tmp_path)["D0901001"]

    def test_compare(self, docs: list[str], tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
        """--compare names new flows and versions, groups and items added or removed, and changed formats."""
        assert main(["definitions", "import", *docs, "--out", str(tmp_path / "old")]) == 0
        changed_items = [Item("J0040", "Register Reading", "NUM(10,1)") if entry.ref == "J0040" else entry
                         for entry in ITEMS]
        rows = [row for row in READINGS.rows if row[3:4] != ("J0016",)]
        rows.insert(3, item(2, "O", "J0171", "Reading Type", "CHAR(1)"))
        newer = Flow("D0901", "001", READINGS.name, READINGS.routes, rows[:-2])
        version = Flow("D0901", "002", READINGS.name, READINGS.routes, READINGS.rows)
        other = Flow("D0904", "001", "Another", [("Supplier", "MOP")], RETIRED.rows)
        new_docs = documents(tmp_path / "new", [newer, version, other], changed_items)
        capsys.readouterr()
        assert main(["definitions", "import", *new_docs, "--compare", str(tmp_path / "old")]) == 0
        assert capsys.readouterr().out.splitlines() == [
            "D0901002: new version: Readings For Tests",
            "D0904001: new flow: Another",
            "D0901001: group BBB (occurrence 2) removed",
            "D0901001: group AAA: item J0171 added (CHAR(1))",
            "D0901001: group CCC: item J0016 removed",
            "D0901001: group CCC: item J0040 format NUM(9,1) -> NUM(10,1)"]
        assert not list((tmp_path / "new").glob("*.yaml"))  # --compare alone writes nothing

    def test_missing_python_docx(self, docs: list[str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                 capsys: pytest.CaptureFixture[str]) -> None:
        """Without the optional extra, one line says what to install; nothing is written."""
        monkeypatch.setitem(sys.modules, "docx", None)
        assert main(["definitions", "import", *docs, "--out", str(tmp_path)]) == 2
        assert capsys.readouterr().err.strip() == (
            "dtn-bridge: the importer needs python-docx: pip install 'dtn-bridge[import]' (or: pip install "
            "python-docx)")
        assert not list(tmp_path.iterdir())

    @pytest.mark.parametrize("content", [b"", b"not a word document", b"PK\x03\x04broken zip"])
    def test_not_a_document(self, tmp_path: Path, content: bytes, capsys: pytest.CaptureFixture[str]) -> None:
        """A file that is no .docx is one line, exit 2, never a traceback."""
        bad = tmp_path / "flows.docx"
        bad.write_bytes(content)
        assert main(["definitions", "import", str(bad), str(bad), "--out", str(tmp_path / "out")]) == 2
        err = capsys.readouterr().err
        assert err.startswith(f"dtn-bridge: {bad}: not a Word .docx document") and err.count("\n") == 1

    def test_needs_out_or_compare(self, docs: list[str], capsys: pytest.CaptureFixture[str]) -> None:
        assert main(["definitions", "import", *docs]) == 2
        assert "give --out DIR, --compare DIR or both" in capsys.readouterr().err


def _real(name: str) -> Path:
    path = REAL_DOCUMENTS / name
    if not path.is_file():
        pytest.skip(f"the DTC 15.4 documents are not on this machine ({path}; set DTC_DOCUMENTS): they are not "
                    "committed, see shared/reference/dtc-documents.md")
    return path


def test_real_catalogue_reproduces_curated_structure(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """On the real DTC 15.4 documents, without overlays, the importer finds every curated flow's group codes,
    parents, ranges, item refs and formats; a format differs only where the curated item's note explains it."""
    args = [str(_real("Data Flow Catalogue.docx")), str(_real("Data Item Catalogue.docx")),
            "--domains", str(_real("Domains.docx"))]
    (tmp_path / "none").mkdir()
    assert main(["definitions", "import", *args, "--overlays", str(tmp_path / "none"), "--out", str(tmp_path)]) == 0
    assert "D0082001: not imported" in capsys.readouterr().err
    generated = load_definitions(tmp_path)
    assert len(generated) >= 200
    curated = curated_definitions()
    compared = 0
    for reference in curated:
        if reference not in generated:
            assert reference in ("D0150001", "P0135001", "P0142001")  # not in DTC 15.4
            continue
        mine, theirs = generated[reference], curated[reference]
        assert [(g.code, g.parent.code if g.parent else None, g.strict_range.text) for g in mine.groups] == \
            [(g.code, g.parent.code if g.parent else None, g.strict_range.text) for g in theirs.groups], reference
        for ours, known in zip(mine.groups, theirs.groups):
            assert [i.ref for i in ours.items] == [i.ref for i in known.items], (reference, known.key)
            raw = {(g["code"], n): g for n, g in enumerate(yaml.safe_load(theirs.path.read_text())["groups"])}
            for n, (a, b) in enumerate(zip(ours.items, known.items)):
                noted = "note" in raw[(known.code, known.index)]["items"][n]
                assert a.format.text == b.format.text or noted, (reference, known.key, b.key)
        compared += 1
    assert compared == 14


def test_real_catalogue_gives_the_shipped_definitions(tmp_path: Path) -> None:
    """Importing DTC 15.4 with the shipped overlays gives the shipped flow_definitions/, byte for byte: they are
    generated, and nothing curated lives outside curated/."""
    args = [str(_real("Data Flow Catalogue.docx")), str(_real("Data Item Catalogue.docx")),
            "--domains", str(_real("Domains.docx"))]
    shipped = REPO / "flow_definitions"
    assert main(["definitions", "import", *args, "--overlays", str(shipped / "curated"), "--out", str(tmp_path)]) == 0
    assert sorted(path.name for path in tmp_path.glob("*.yaml")) == sorted(path.name for path in
                                                                          shipped.glob("*.yaml"))
    for path in sorted(tmp_path.glob("*.yaml")):
        assert path.read_bytes() == (shipped / path.name).read_bytes(), path.name
