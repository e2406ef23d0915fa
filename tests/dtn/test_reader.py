"""The streaming reader: real samples, and every rule it enforces, located to the line and item."""

from __future__ import annotations

import io
import tracemalloc
from pathlib import Path

import pytest

from bridge.dtn.definitions import DefinitionSet, load_definitions
from bridge.dtn.reader import FileParse, FlowFileReader
from bridge.inbound.flowfile import check_file
from tests.conftest import EXAMPLES, sample

HEADER = "ZHV|0000475656|D0010002|D|UDMS|X|MRCY|20160302153151||||OPER|"
MPAN = "026|1200023305967|V|"
METER = "028|F75A 00802|D|"
READING = "030|S|20160222000000|56311.0|||T|N|"


def read(reader: FlowFileReader, *lines: str, trailer: str | None = "auto") -> FileParse:
    """Parse a D0010 body; the trailer is computed unless given (None: no trailer)."""
    body = list(lines)
    if trailer == "auto":
        flows = sum(1 for line in body if line.startswith("026|"))
        trailer = f"ZPT|0000475656|{len(body)}||{flows}|20160302154650|"
    text = [HEADER, *body] + ([trailer] if trailer is not None else [])
    return reader.read(line + "\n" for line in text).check()


def rules(parse: FileParse) -> list[str]:
    return [defect.rule for defect in parse.defects]


class TestRealSamples:
    @pytest.mark.parametrize(("name", "flow", "instances"), [
        ("DTC5259515123502080915D0010", "D0010002", 11),
        ("ocdiff_D0155001_a", "D0155001", 1),
        ("ocdiff_D0155001_b", "D0155001", 1),
        ("OVOE1359", "P0135001", 209),
        ("OVOE1429", "P0142001", 1),
    ])
    def test_valid_samples(self, reader: FlowFileReader, name: str, flow: str, instances: int) -> None:
        """Every complete real sample parses without a defect."""
        checked = check_file(sample(name), reader)
        assert checked.describe_defects() == []
        assert (checked.flow_reference, checked.flow_count) == (flow, instances)

    def test_junk_after_terminator(self, reader: FlowFileReader) -> None:
        """The corrupted Kraken copy is rejected at its header, naming the extra fields."""
        checked = check_file(sample("mxcode1"), reader)
        assert [d.describe() for d in checked.defects] == [
            "line 1 group ZHV: a ZHV header has 11 fields, found 13 (extra: [' ', ' '])"]

    def test_truncated_excerpt(self, reader: FlowFileReader) -> None:
        """The Sureserve excerpt keeps the real trailer's counts, which no longer fit."""
        checked = check_file(sample("sureserve"), reader)
        assert checked.describe_defects() == [
            "D0155001 line 8 group ZPT item 2: Total Group Count is '144' but the file has 6",
            "D0155001 line 8 group ZPT item 4: Flow Count is '48' but the file has 2",
        ]

    def test_fake_dates(self, reader: FlowFileReader) -> None:
        """The flowtocsv 'fake clob' is rejected for its impossible dates, each located."""
        checked = check_file(sample("flowtocsv"), reader)
        assert not checked.ok
        assert set(rules(checked)) == {"header-field", "item-format", "trailer-field", "mpan-check-digit"}
        assert "D0150001 line 1 group ZHV item 7 (created, DATETIME): '20179568182352' is not a calendar date" \
            in checked.describe_defects()
        assert any(d.line == 2 and d.group == "288" and d.item_key for d in checked.defects)

    def test_truncated_pool_extract(self, reader: FlowFileReader) -> None:
        """Chellow's D0265 extract keeps the full file's record count and checksum, which are checked."""
        checked = check_file(sample("chellow"), reader)
        assert rules(checked) == ["trailer-record-count", "trailer-checksum"]


class TestDefects:
    def test_issue_example(self, reader: FlowFileReader) -> None:
        """A bad number is located to line, group and item, in the documented words."""
        parse = read(reader, MPAN, METER, "030|S|20160222000000|12x4|||T|N|")
        assert parse.describe_defects() == [
            "D0010002 line 4 group 030 item 3 (register_reading, NUM(9,1)): '12x4' is not a number"]

    def test_all_defects_reported(self, reader: FlowFileReader) -> None:
        """Several defects in one file are all listed, in file order."""
        parse = read(reader, MPAN, METER, "030|S|20160231000000|1.25|||Y|N|", "026|12000233059|V|", METER, READING,
                     "999|x|")
        assert [(d.line, d.rule, d.item) for d in parse.defects] == [
            (4, "item-format", 2), (4, "item-format", 3), (4, "item-format", 6), (5, "mpan-check-digit", 1),
            (8, "group-unknown", None)]

    def test_item_count(self, reader: FlowFileReader) -> None:
        """Too many or too few items are counted."""
        parse = read(reader, "026|1200023305967|V|X|", METER, "030|S|20160222000000|")
        assert [d.describe() for d in parse.defects] == [
            "line 2 group 026: expected 2 items, found 3: extra ['X']",
            "line 4 group 030: expected 7 items, found 2",
        ]

    def test_the_whole_first_field_is_the_group_code(self, reader: FlowFileReader) -> None:
        """'0260' is no group 026 (hypothesis found this), and a trailer must be 'ZPT', not merely start with it."""
        parse = read(reader, "0260|1200023305967|V|", METER, READING)
        assert parse.defects[0].describe() == "line 2 group 0260: '0260' is not a group of D0010002"
        parse = read(reader, MPAN, METER, READING, trailer="ZPT0|0000475656|3||1|20160302154650|")
        assert rules(parse) == ["trailer-code"]

    def test_group_out_of_place(self, reader: FlowFileReader) -> None:
        """A group outside its parent is named with the parent it needs."""
        parse = read(reader, MPAN, READING)
        assert "group 030 must be inside a group 028" in parse.defects[0].message

    def test_range_enforced(self, reader: FlowFileReader) -> None:
        """A mandatory child group that is missing is reported at its parent's line."""
        parse = read(reader, MPAN)
        assert parse.describe_defects() == [
            "D0010002 line 2 group 026: group 026 (line 2) must contain 1-* group 028 (Meter/Reading Types), found 0"]

    def test_lenient_and_strict_ranges(self, definitions: DefinitionSet) -> None:
        """Real files omit 032; only strict mode holds them to the DTC range."""
        assert read(FlowFileReader(definitions), MPAN, METER, READING).ok
        strict = read(FlowFileReader(definitions, strict=True), MPAN, METER, READING)
        assert rules(strict) == ["group-range"]

    def test_trailer_checks(self, reader: FlowFileReader) -> None:
        """File identifier, counts and completion time in the trailer are all checked."""
        parse = read(reader, MPAN, METER, READING, trailer="ZPT|0000475657|4||2|20160302256650|")
        assert rules(parse) == ["trailer-file-identifier", "trailer-group-count", "trailer-flow-count",
                                "trailer-field"]

    def test_a_count_of_thousands_of_digits_is_a_defect(self, reader: FlowFileReader) -> None:
        """Found by the fuzzer: a 70,000-digit count made int() raise (Python's 4300-digit limit). It is a defect
        now, and its message shows the start of the text only."""
        parse = read(reader, MPAN, METER, READING, trailer=f"ZPT|0000475656|{'7' * 60_000}||1|20160302154650|")
        assert rules(parse) == ["trailer-group-count"]
        assert parse.trailer is not None and parse.trailer.group_count is None
        assert len(parse.defects[0].message) < 120

    def test_dtn_checksum_carried_not_judged(self, reader: FlowFileReader) -> None:
        """The DTC leaves the ZHV checksum's algorithm open, so a value there is kept, not held to the pool one."""
        parse = read(reader, MPAN, METER, READING, trailer="ZPT|0000475656|3|12345|1|20160302154650|")
        assert parse.ok and parse.trailer is not None and parse.trailer.checksum == "12345"

    def test_pool_checksum_verified(self, reader: FlowFileReader) -> None:
        """A pool file whose checksum does not match its records is rejected."""
        text = sample("OVOE1429").read_text().replace("|692812869", "|692812868")
        assert rules(reader.read(text.splitlines()).check()) == ["trailer-checksum"]

    def test_missing_trailer(self, reader: FlowFileReader) -> None:
        """A truncated file is reported, not taken as complete."""
        assert rules(read(reader, MPAN, METER, READING, trailer=None)) == ["trailer-missing"]

    def test_nothing_after_trailer(self, reader: FlowFileReader) -> None:
        """Content after ZPT is a defect."""
        parse = reader.read([HEADER, MPAN, METER, READING, "ZPT|0000475656|3||1|20160302154650|", "026|1|V|"])
        assert rules(parse.check()) == ["after-trailer"]

    def test_unknown_flow(self, reader: FlowFileReader) -> None:
        """A flow without a definition is named."""
        parse = reader.read(["ZHV|1|D9999001|D|UDMS|X|MRCY|20160302153151||||OPER|"]).check()
        assert parse.describe_defects() == [
            ("D9999001 line 1 group ZHV item 2 (flow_reference): flow 'D9999001' has no definition in "
             "flow_definitions/ (no such flow version in the imported DTC catalogue; import a newer one with "
             "`dtn-bridge definitions import`)")]

    def test_broken_definition_fails_its_files_only(self, tmp_path: Path) -> None:
        """Definitions compile on first use: a broken one is a defect of the files of that flow, named."""
        (tmp_path / "D9999001.yaml").write_text("flow: D9999\nversion: '001'\nname: x\ngroups: []\n")
        reader = FlowFileReader(load_definitions(tmp_path))
        parse = reader.read(["ZHV|1|D9999001|D|UDMS|X|MRCY|20160302153151||||OPER|"]).check()
        assert parse.describe_defects() == [
            ("D9999001 line 1 group ZHV item 2 (flow_reference): the definition of D9999001 is invalid: "
             "D9999001.yaml: groups: must be a non-empty list")]

    @pytest.mark.parametrize("content", ["", "garbage\n", "\x00\x01\x02", "ZPT|1|2||3|4|\n"])
    def test_not_a_flow_file(self, reader: FlowFileReader, content: str) -> None:
        """Empty, binary or headless input gets one clear defect and no instance."""
        parse = reader.read(content.splitlines(keepends=True))
        assert list(parse) == []
        assert parse.defects and parse.defects[0].line == 1

    def test_crlf_accepted(self, reader: FlowFileReader) -> None:
        """CRLF line endings read the same as LF."""
        lines = [HEADER, MPAN, METER, READING, "ZPT|0000475656|3||1|20160302154650|"]
        assert reader.read(line + "\r\n" for line in lines).check().ok

    def test_defect_limit(self, definitions: DefinitionSet) -> None:
        """A hopeless file stops at the defect limit and says so."""
        parse = read(FlowFileReader(definitions, max_defects=5), *["999|x|"] * 50)
        assert len(parse.defects) == 5 and parse.defects_truncated
        assert parse.describe_defects()[-1].endswith("more defects not listed (limit 5)")

    def test_instances_stream(self, reader: FlowFileReader) -> None:
        """Flow instances come one at a time with their subtree."""
        parse = read(reader, MPAN, METER, READING, MPAN, METER, READING, READING)
        assert [(i.index, i.root.lines()) for i in reader.read(
            [HEADER, MPAN, METER, READING, MPAN, METER, READING, READING,
             "ZPT|0000475656|7||2|20160302154650|"])] == [(1, 3), (2, 4)]
        assert parse.ok


D0036_HEADER = "ZHV|0000000001|D0036001|D|SYNA|X|SYNB|20260401120000||||OPER|"


def d0036(reader: FlowFileReader, *days: tuple[str, int]) -> FileParse:
    """A D0036 with one MPAN Core and, per (date, count), a settlement date with that many periods; by blocks."""
    body = ["101|2200031930792|AI|SYNA|"]
    for day, count in days:
        body += [f"102|{day}|"] + ["103|A|1.0|"] * count
    text = [D0036_HEADER, *body, f"ZPT|0000000001|{len(body)}||1|20260401120500|"]
    return reader.read(io.StringIO("".join(line + "\n" for line in text), newline="")).check()


class TestNamedChecks:
    def test_made_up_mpans_refused(self, reader: FlowFileReader) -> None:
        """Igloo's D0379 sample uses made-up MPAN Cores: each is a located defect under the default severity."""
        checked = check_file(sample("igloo-airflow"), reader)
        assert checked.describe_defects() == [
            ("D0379001 line 2 group 25B item 1 (mpan_core, NUM(13)): '1234567891234' fails the MPAN check digit: "
             "its last digit must be 6"),
            ("D0379001 line 52 group 25B item 1 (mpan_core, NUM(13)): '2234567891235' fails the MPAN check digit: "
             "its last digit must be 9"),
        ]
        assert rules(checked) == ["mpan-check-digit", "mpan-check-digit"] and checked.warnings == []

    @pytest.mark.parametrize("fast", [True, False])
    def test_warn_and_off(self, definitions: DefinitionSet, fast: bool) -> None:
        """warn: the file is valid and the defects are warnings; off: not checked at all."""
        warn = check_file(sample("igloo-airflow"), FlowFileReader(definitions, fast=fast,
                                                                  checks={"mpan_check_digit": "warn"}))
        assert warn.ok and [(w.line, w.group, w.item, w.rule) for w in warn.warnings] == [
            (2, "25B", 1, "mpan-check-digit"), (52, "25B", 1, "mpan-check-digit")]
        assert warn.describe_warnings()[0].startswith("D0379001 line 2 group 25B item 1 (mpan_core, NUM(13)): ")
        off = check_file(sample("igloo-airflow"), FlowFileReader(definitions, fast=fast,
                                                                 checks={"mpan_check_digit": "off"}))
        assert off.ok and off.warnings == []

    def test_mpan_line_walk(self, reader: FlowFileReader) -> None:
        """On the line walk too, with the rule and the located item."""
        parse = read(reader, "026|1200023305968|V|", METER, READING)
        assert [(d.line, d.group, d.item, d.item_key, d.rule) for d in parse.defects] == [
            (2, "026", 1, "mpan_core", "mpan-check-digit")]

    def test_clock_change_days(self, reader: FlowFileReader) -> None:
        """D0036 periods are in local time: 46 on 29 March 2026, 50 on 25 October 2026, 48 on other days."""
        assert d0036(reader, ("20260329", 46), ("20261025", 50), ("20260330", 48)).ok
        parse = d0036(reader, ("20260328", 46), ("20260329", 48), ("20261025", 48))
        assert parse.describe_defects() == [
            ("D0036001 line 3 group 102 item 1 (settlement_date, DATE): group 103 (HH Periods): 46 half-hourly "
             "periods, but 2026-03-28 (local time) has 48"),
            ("D0036001 line 50 group 102 item 1 (settlement_date, DATE): group 103 (HH Periods): 48 half-hourly "
             "periods, but 2026-03-29 (the spring clock change, local time) has 46"),
            ("D0036001 line 99 group 102 item 1 (settlement_date, DATE): group 103 (HH Periods): 48 half-hourly "
             "periods, but 2026-10-25 (the autumn clock change, local time) has 50"),
        ]
        assert rules(parse) == ["settlement-periods"] * 3

    def test_a_count_outside_the_range_is_one_defect(self, reader: FlowFileReader) -> None:
        """47 periods break the DTC range: that defect alone, not the check as well."""
        assert rules(d0036(reader, ("20260329", 47))) == ["group-range"]

    @pytest.mark.parametrize("fast", [True, False])
    def test_a_dated_parent_that_is_absent(self, definitions: DefinitionSet, fast: bool) -> None:
        """D0362 62I periods sit under an optional 61I day: a 60I without one has no date to check (the block path
        raised ValueError from its zip there)."""
        text = (EXAMPLES / "D0362003.txt").read_text()
        assert "\n60I|" in text and "\n61I|" not in text  # the example holds such a 60I
        assert check_file(EXAMPLES / "D0362003.txt", FlowFileReader(definitions, fast=fast)).ok


def on_disk(tmp_path: Path, *lines: bytes) -> Path:
    path = tmp_path / "D0010002.txt"
    path.write_bytes(b"".join(line + b"\n" for line in lines))
    return path


D0010_BODY = [HEADER.encode(), MPAN.encode(), METER.encode(), READING.encode(),
              b"ZPT|0000475656|3||1|20160302154650|"]


class TestUnreadableLines:
    """Issue 14: lines the reader will not take end the pass with one defect on the right line."""

    @pytest.mark.parametrize("fast", [True, False])
    def test_a_byte_that_is_not_utf8_on_line_3_is_reported_on_line_3(self, tmp_path: Path,
                                                                      definitions: DefinitionSet, fast: bool) -> None:
        """It was reported as line 1 with a false "the file is empty" defect (the strict decoder fails on the whole
        block it decodes ahead)."""
        lines = list(D0010_BODY)
        lines[2] = b"028|F75A \xff0802|D|"
        parse = check_file(on_disk(tmp_path, *lines), FlowFileReader(definitions, fast=fast))
        assert [(d.rule, d.line) for d in parse.defects] == [("encoding", 3)]
        assert "0xff" in parse.defects[0].message and parse.finished and not parse.ok

    @pytest.mark.parametrize("line", [1, 5, 6])
    def test_a_byte_that_is_not_utf8_in_the_header_trailer_or_after_it(self, tmp_path: Path,
                                                                       definitions: DefinitionSet, line: int) -> None:
        lines = [*D0010_BODY, b"x"]
        lines[line - 1] = lines[line - 1][:-1] + b"\xc3|"
        parse = check_file(on_disk(tmp_path, *lines[:line] if line == 6 else lines[:5]), FlowFileReader(definitions))
        assert [(d.rule, d.line) for d in parse.defects][:1] == [("encoding", line)]
        assert "file-empty" not in rules(parse)

    @pytest.mark.parametrize("fast", [True, False])
    def test_an_endless_line_is_a_defect_read_in_bounded_memory(self, tmp_path: Path, definitions: DefinitionSet,
                                                                fast: bool) -> None:
        """One 64 MiB line took 430 MB of memory and became a 67-million-character defect message. Now the file is
        read no further than the limit past a line end (here 32 MiB of line against the default 64 KiB)."""
        lines = list(D0010_BODY)
        lines[3] = b"030|S|20160222000000|" + b"9" * (32 << 20) + b"|||T|N|"
        path = on_disk(tmp_path, *lines)
        tracemalloc.start()
        try:
            parse = check_file(path, FlowFileReader(definitions, fast=fast))
            peak = tracemalloc.get_traced_memory()[1]
        finally:
            tracemalloc.stop()
        assert [(d.rule, d.line) for d in parse.defects] == [("line-too-long", 4)]
        assert len(parse.defects[0].message) < 200 and peak < 2 << 20

    @pytest.mark.parametrize("fast", [True, False])
    def test_the_limit_is_configurable(self, tmp_path: Path, definitions: DefinitionSet, fast: bool) -> None:
        path = on_disk(tmp_path, *D0010_BODY)
        reader = FlowFileReader(definitions, fast=fast)
        assert check_file(path, reader).ok
        assert check_file(path, reader, max_line_bytes=len(D0010_BODY[0])).ok  # a line of exactly the limit
        parse = check_file(path, reader, max_line_bytes=40)
        assert [(d.rule, d.line) for d in parse.defects] == [("line-too-long", 1)]
        lines = list(D0010_BODY)
        lines[3] = b"030|S|20160222000000|" + b"9" * 100 + b"|||T|N|"
        parse = check_file(on_disk(tmp_path, *lines), reader, max_line_bytes=100)
        assert [(d.rule, d.line) for d in parse.defects] == [("line-too-long", 4)]

    def test_a_huge_value_is_quoted_short(self, reader: FlowFileReader) -> None:
        """Every defect text quotes at most 40 characters of a value."""
        parse = read(reader, MPAN, METER, f"030|S|20160222000000|{'x' * 50_000}|||T|N|")
        assert rules(parse) == ["item-format"]
        assert len(parse.defects[0].message) < 120 and "50000 characters" in parse.defects[0].message
