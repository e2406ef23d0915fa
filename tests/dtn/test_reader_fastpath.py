"""The validation pass by blocks (`FileParse.check` on a text stream) against the line-by-line walk it stands in for.

The block pass matches whole flow instances with one expression and walks line by line only what does not match, so
for any input it must report exactly what the line walk reports: the same defects (rule, message, line, group, item,
in order), the same counts, header and trailer. The property tests below generate valid files from every shipped
definition and break them in the ways real files break.
"""

from __future__ import annotations

import io
import itertools
import random
import re
from collections.abc import Callable, Iterator
from datetime import date

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from bridge.dtn.checks import settlement_period_count
from bridge.dtn.compiled import FlowDefinition
from bridge.dtn.definitions import DefinitionSet, load_definitions
from bridge.dtn.formats import LogicalFormat
from bridge.dtn.model import FileHeader
from bridge.dtn.reader import FileParse, FlowFileReader
from bridge.dtn.synthetic import group_instance, synthetic_file
from bridge.dtn.walk import LineWalk
from bridge.dtn.writer import FlowFileWriter
from tests.conftest import REPO

DEFINITIONS = load_definitions(REPO / "flow_definitions")
REFERENCES = sorted(DEFINITIONS)
D0010 = "ZHV|0000475656|D0010002|D|UDMS|X|MRCY|20160302153151||||OPER|\n"


def outcome(parse: FileParse) -> tuple[object, ...]:
    """Everything a validation pass reports."""
    return (parse.defects, parse.defects_truncated, parse.group_count, parse.flow_count, parse.header, parse.trailer,
            parse.finished, parse.ok, parse.warnings, parse.warnings_truncated)


def by_blocks(text: str, *, strict: bool = False, max_defects: int = 100, block_lines: int = 8192,
              span_cap: int = 8 << 20, newline: str | None = "", checks: dict[str, str] | None = None) -> FileParse:
    reader = FlowFileReader(DEFINITIONS, strict=strict, max_defects=max_defects, checks=checks)
    reader.block_lines = block_lines
    reader.span_cap = span_cap
    return reader.read(io.StringIO(text, newline=newline)).check()


def by_lines(text: str, *, strict: bool = False, max_defects: int = 100, newline: str | None = "",
             checks: dict[str, str] | None = None) -> FileParse:
    reader = FlowFileReader(DEFINITIONS, strict=strict, max_defects=max_defects, fast=False, checks=checks)
    return reader.read(io.StringIO(text, newline=newline)).check()


def pool_file(definition: FlowDefinition, seed: int) -> list[str]:
    """A valid pool-layout file (ZHD header, no final '|', a checked checksum) of `definition`."""
    rng = random.Random(seed)
    header = FileHeader("ZHD-POOL", "", definition.reference, "X", "SYNA", "X", "SYNB", "20200101120000",
                        terminated=False)
    writer = FlowFileWriter(header)
    lines = [writer.header()]
    for group in definition.level1:
        cardinality = group.strict_range
        high = cardinality.maximum if cardinality.maximum is not None else cardinality.minimum + 2
        for _ in range(rng.randint(cardinality.minimum, min(high, cardinality.minimum + 2))):
            lines.extend(writer.instance(group_instance(group, rng, fanout=2)))
    lines.append(writer.trailer("20200101120500"))
    return lines


_EDIT_CHARACTERS = "0A9Z|. -\r\n\x00é"
_CLOCK_CHANGES = ["20210328", "20211031", "20220327", "20221030", "20240331", "20241027"]
_DATE_ITEM = re.compile(r"(?<=\|)(?:19|20|21)[0-9]{6}(?=\|)")
_MPAN_ITEM = re.compile(r"(?<=\|)[0-9]{13}(?=\|)")


@st.composite
def broken_files(draw: st.DrawFn) -> str:
    """A valid file of a shipped definition, perhaps broken: characters edited, lines deleted, duplicated, swapped
    or emptied, the trailer dropped or followed by more, other line ends (CRLF, CR, mixed), no final line end."""
    definition = DEFINITIONS[draw(st.sampled_from(REFERENCES))]
    seed = draw(st.integers(0, 2**32))
    if draw(st.booleans()):
        lines = pool_file(definition, seed)
    else:
        lines = list(synthetic_file(definition, seed, fanout=draw(st.integers(1, 3))))
    lines = [line.rstrip("\n") for line in lines]
    for _ in range(draw(st.integers(0, 3))):
        kind = draw(st.sampled_from(["edit", "delete", "duplicate", "swap", "empty", "no-trailer", "after-trailer",
                                     "clock-change", "mpan"]))
        index = draw(st.integers(1, max(1, len(lines) - 1)))
        if kind == "edit" and lines:
            index = min(index, len(lines) - 1)
            line = lines[index]
            at = draw(st.integers(0, len(line)))
            character = draw(st.sampled_from(_EDIT_CHARACTERS))
            lines[index] = line[:at] + character + line[at + draw(st.integers(0, 1)):]
        elif kind == "delete" and len(lines) > 1:
            del lines[min(index, len(lines) - 1)]
        elif kind == "duplicate" and len(lines) > 1:
            index = min(index, len(lines) - 1)
            lines.insert(index, lines[index])
        elif kind == "swap" and len(lines) > 2:
            index = min(index, len(lines) - 2)
            lines[index], lines[index + 1] = lines[index + 1], lines[index]
        elif kind == "empty":
            lines.insert(index, "")
        elif kind == "no-trailer" and lines and lines[-1].startswith("ZPT"):
            lines.pop()
        elif kind == "clock-change":  # a date (a settlement date, among others) moved onto a clock-change day
            index = min(index, len(lines) - 1)
            lines[index] = _DATE_ITEM.sub(draw(st.sampled_from(_CLOCK_CHANGES)), lines[index], count=1)
        elif kind == "mpan":  # a 13-digit item (an MPAN Core, among others) with another last digit
            index = min(index, len(lines) - 1)
            last = draw(st.sampled_from("0123456789"))
            lines[index] = _MPAN_ITEM.sub(lambda found, last=last: found[0][:12] + last, lines[index], count=1)
        elif kind == "after-trailer":
            lines.append(draw(st.sampled_from(["", "026|1|V|", "ZPT|1|2||3|4|"])))
    ending = draw(st.sampled_from(["\n", "\r\n", "\r", "mixed"]))
    ends = [draw(st.sampled_from(["\n", "\r\n", "\r"])) if ending == "mixed" else ending for _ in lines]
    text = "".join(line + end for line, end in zip(lines, ends, strict=True))
    if draw(st.booleans()):
        text = text.rstrip("\r\n")
    return text


class TestDifferential:
    @settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
    @given(text=broken_files(), strict=st.booleans(), max_defects=st.sampled_from([1, 3, 100]),
           block_lines=st.sampled_from([1, 2, 3, 7, 64, 8192]),
           checks=st.fixed_dictionaries({"mpan_check_digit": st.sampled_from(["error", "warn", "off"]),
                                         "settlement_periods": st.sampled_from(["error", "warn", "off"])}))
    def test_same_as_line_walk(self, text: str, strict: bool, max_defects: int, block_lines: int,
                               checks: dict[str, str]) -> None:
        """Valid or broken, any file gets the same report by blocks as line by line, whatever the block size and
        the severities of the named checks (warnings included)."""
        assert outcome(by_blocks(text, strict=strict, max_defects=max_defects, block_lines=block_lines,
                                 checks=checks)) == outcome(by_lines(text, strict=strict, max_defects=max_defects,
                                                                     checks=checks))

    @settings(max_examples=100, deadline=None)
    @given(reference=st.sampled_from(REFERENCES), seed=st.integers(0, 2**32), strict=st.booleans())
    def test_valid_files(self, reference: str, seed: int, strict: bool) -> None:
        """Every shipped definition's synthetic files are valid both ways (strict files also when lenient)."""
        text = "".join(synthetic_file(DEFINITIONS[reference], seed))
        fast = by_blocks(text, strict=strict, block_lines=5)
        assert fast.ok, fast.describe_defects()
        assert outcome(fast) == outcome(by_lines(text, strict=strict))

    @settings(max_examples=150, deadline=None)
    @given(text=broken_files(), at=st.floats(0, 1), bad=st.sampled_from([b"\xff", b"\xc3", b"\xed\xa0\x80"]),
           chunk=st.sampled_from([8, 64, 8192]), block_lines=st.sampled_from([1, 4, 8192]))
    def test_undecodable_bytes(self, text: str, at: float, bad: bytes, chunk: int, block_lines: int) -> None:
        """Bytes that are not UTF-8 are reported at the same line (the stream raises where it decodes them)."""
        data = text.encode()
        cut = int(len(data) * at)
        data = data[:cut] + bad + data[cut:]

        def stream() -> io.TextIOWrapper:
            wrapper = io.TextIOWrapper(io.BytesIO(data), encoding="utf-8", newline="")
            wrapper._CHUNK_SIZE = chunk  # type: ignore[attr-defined]  # decode errors surface chunk by chunk
            return wrapper

        fast = FlowFileReader(DEFINITIONS)
        fast.block_lines = block_lines
        slow = FlowFileReader(DEFINITIONS, fast=False)
        assert outcome(fast.read(stream()).check()) == outcome(slow.read(stream()).check())

    @pytest.mark.parametrize("newline", [None, "\n", "\r", "\r\n"])
    @pytest.mark.parametrize("ending", ["\n", "\r\n", "\r", "\n\r"])
    def test_other_newline_modes(self, newline: str | None, ending: str) -> None:
        """Streams that split lines otherwise than newline='' still get the line walk's report (blocks that are not
        one line per line end are walked)."""
        text = ending.join([D0010[:-1], "026|1200023305967|V|", "028|F75A\r00802|D|", "030|S|20160222000000|1.0|||T|N|",
                            "ZPT|0000475656|3||1|20160302154650|"]) + ending
        assert outcome(by_blocks(text, newline=newline, block_lines=2)) == outcome(by_lines(text, newline=newline))


SEVERITIES = st.sampled_from(["error", "warn", "off"])


def periods_of(text: str) -> int:
    return settlement_period_count(date(int(text[:4]), int(text[4:6]), int(text[6:])), "local")


@st.composite
def checked_files(draw: st.DrawFn) -> tuple[str, int, int]:
    """A valid D0036 (local-time periods) or D0010 file whose settlement dates are moved onto clock-change days or
    whose MPAN Cores get other last digits, with how many dates and MPAN Cores were changed."""
    reference = draw(st.sampled_from(["D0036001", "D0010002"]))
    lines = list(synthetic_file(DEFINITIONS[reference], draw(st.integers(0, 2**32)), fanout=draw(st.integers(1, 3))))
    dates = mpans = 0
    for index, line in enumerate(lines):
        if line.startswith("102|") and draw(st.booleans()):
            day = draw(st.sampled_from(_CLOCK_CHANGES))
            dates += periods_of(line[4:12]) != periods_of(day)
            lines[index] = f"102|{day}|\n"
        elif line[:4] in ("026|", "101|") and draw(st.booleans()):
            last = draw(st.sampled_from("0123456789"))
            mpans += line[16] != last
            lines[index] = line[:16] + last + line[17:]
    return "".join(lines), dates, mpans


class TestNamedChecks:
    @settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
    @given(file=checked_files(), mpan=SEVERITIES, periods=SEVERITIES, block_lines=st.sampled_from([1, 5, 8192]))
    def test_same_as_line_walk(self, file: tuple[str, int, int], mpan: str, periods: str, block_lines: int) -> None:
        """Wrong check digits and period counts that do not fit their dates are found by blocks as line by line,
        one defect (or warning) each, under every severity."""
        text, dates, mpans = file
        checks = {"mpan_check_digit": mpan, "settlement_periods": periods}
        fast = by_blocks(text, block_lines=block_lines, checks=checks)
        assert outcome(fast) == outcome(by_lines(text, checks=checks))
        found = [(defect.rule, severity) for severity, defects in (("error", fast.defects), ("warn", fast.warnings))
                 for defect in defects]
        expected = [("mpan-check-digit", mpan)] * mpans * (mpan != "off") + \
            [("settlement-periods", periods)] * dates * (periods != "off")
        assert sorted(found) == sorted(expected)


class TestCalendar:
    @pytest.mark.parametrize(("text", "valid"), [
        ("20240229", True), ("20000229", True), ("19520229", True), ("21960229", True), ("21000229", False),
        ("20230229", False), ("19480229", False), ("20230431", False), ("20230430", True), ("20231231", True),
        ("20231232", False), ("20230001", False), ("20231300", False), ("19491231", False), ("22000101", False)])
    def test_date_pattern_is_calendar_exact(self, text: str, valid: bool) -> None:
        """The expression alone knows leap years and month lengths, so no day needs a second look."""
        date = LogicalFormat.parse("DATE")
        assert (re.fullmatch(date.pattern, text) is not None) is valid
        assert (date.check(text) is None) is valid
        datetime = LogicalFormat.parse("DATETIME")
        assert (re.fullmatch(datetime.pattern, text + "235959") is not None) is valid

    def test_every_day_agrees_with_check(self) -> None:
        """Every ccyymmdd from 1940 to 2209, days 00-32 of months 00-13, is judged alike by pattern and check."""
        date = re.compile(LogicalFormat.parse("DATE").pattern)
        check = LogicalFormat.parse("DATE").check
        disagree = [text for text in (f"{year}{month:02d}{day:02d}" for year in range(1940, 2210)
                                      for month in range(14) for day in range(33))
                    if (date.fullmatch(text) is not None) != (check(text) is None)]
        assert disagree == []

    @pytest.mark.parametrize(("day", "valid"), [("20240229", True), ("21000229", False), ("20230431", False)])
    def test_reading_dates(self, day: str, valid: bool) -> None:
        """A reading on an impossible day is found by blocks, at its line and item, as line by line."""
        text = (D0010 + "026|1200023305967|V|\n028|F75A 00802|D|\n"
                f"030|S|{day}000000|56311.0|||T|N|\nZPT|0000475656|3||1|20160302154650|\n")
        fast = by_blocks(text)
        assert outcome(fast) == outcome(by_lines(text))
        assert fast.ok is valid
        if not valid:
            assert fast.describe_defects() == [(f"D0010002 line 4 group 030 item 2 (reading_date_time, DATETIME): "
                                                f"'{day}000000' is not a calendar date")]


def d0275(instances: int) -> list[str]:
    """A valid D0275 file: each flow instance is 1 + n * 49 lines (48 half hours per day)."""
    return list(synthetic_file(DEFINITIONS["D0275001"], 3, instances=instances, fanout=1))


class TestBlocks:
    @pytest.mark.parametrize("block_lines", [1, 2, 3, 10, 48, 49, 50, 1000])
    def test_instances_across_blocks(self, block_lines: int) -> None:
        """Instances longer than a block are matched whole once their end is read; counts stay exact."""
        text = "".join(d0275(12))
        fast = by_blocks(text, block_lines=block_lines)
        assert fast.ok and outcome(fast) == outcome(by_lines(text))
        assert fast.flow_count == 12

    @pytest.mark.parametrize("block_lines", [1, 7, 50, 8192])
    @pytest.mark.parametrize("where", [2, 30, 60, 200, -2])
    def test_defect_across_blocks(self, block_lines: int, where: int) -> None:
        """A broken line inside an instance that spans blocks is reported where the line walk reports it."""
        lines = d0275(6)
        lines[where] = lines[where].replace("|", "|x", 1)
        text = "".join(lines)
        fast = by_blocks(text, block_lines=block_lines)
        assert not fast.ok and outcome(fast) == outcome(by_lines(text))

    @pytest.mark.parametrize("span_cap", [1, 100, 5000])
    def test_instance_over_the_cap(self, span_cap: int) -> None:
        """An instance longer than the cap is read line by line as it comes, with the same result."""
        lines = d0275(5)
        broken = list(lines)
        broken[120] = "27B|X|1.0|\n"
        for text in ("".join(lines), "".join(broken)):
            assert outcome(by_blocks(text, block_lines=16, span_cap=span_cap)) == outcome(by_lines(text))

    def test_valid_instances_are_matched_not_walked(self, monkeypatch: pytest.MonkeyPatch) -> None:
        """On a valid file the block pass walks only the trailer: every instance is matched by expression."""
        walked: list[int] = []
        original: Callable[..., Iterator[object]] = LineWalk.walk

        def counting(self: LineWalk, lines: object) -> Iterator[object]:
            walked.append(self.line_number)
            return original(self, lines)

        monkeypatch.setattr(LineWalk, "walk", counting)
        parse = by_blocks("".join(d0275(40)), block_lines=100)
        assert parse.ok and parse.flow_count == 40
        assert len(walked) == 1

    def test_refused_instance_keeps_groups_open(self) -> None:
        """After a valid instance, a level-1 line the root refuses leaves that instance's groups open for the lines
        that follow it, as line by line (D0019: a second ZPI, then groups that fit the open ZIN)."""
        definition = DEFINITIONS["D0019001"]
        lines = list(synthetic_file(definition, 5, fanout=1))
        zpi = next(line for line in lines if line.startswith("ZPI"))
        last_child = definition.level1[1].children[-1]
        writer = FlowFileWriter(FileHeader("ZHV", "1", definition.reference, "X", "A", "X", "B", "20200101120000"))
        child_lines = list(writer.instance(group_instance(last_child, random.Random(1))))
        lines[-1:-1] = [zpi, *child_lines, *child_lines]
        text = "".join(lines)
        fast = by_blocks(text, block_lines=4)
        assert not fast.ok and outcome(fast) == outcome(by_lines(text))

    @pytest.mark.parametrize("block_lines", [1, 8192])
    def test_instance_before_a_longer_code_keeps_groups_open(self, block_lines: int) -> None:
        """A valid instance followed by a line whose first field only starts with a level-1 code ('0260|...': no group
        026) is not complete: the walk reads that line as unknown and keeps the instance's groups open, so the 027
        after it is out of order inside the open 026 and the 028s join it (one flow, not a 027 outside any 026)."""
        text = ("ZHV|0000000001|D0010002|D|SYNA|X|SYNB|20220204120000||||OPER|\n026|1068301693655|3|\n028|PEAC|3|\n"
                "0260|7799008273165|O|\n027|J9|5TR52G82O|\n028|390ID0XL|E|\n028|JIF0RB7BC|2|\n"
                "ZPT|0000000001|6||2|20220204120500|\n")
        checks = {"mpan_check_digit": "error", "settlement_periods": "error"}
        fast = by_blocks(text, max_defects=3, block_lines=block_lines, checks=checks)
        assert outcome(fast) == outcome(by_lines(text, max_defects=3, checks=checks))
        assert [defect.rule for defect in fast.defects] == ["group-unknown", "group-unexpected", "trailer-flow-count"]
        assert "may not appear here" in fast.defects[1].message and fast.flow_count == 1

    @pytest.mark.parametrize("max_defects", [1, 2, 3])
    def test_defect_limit_before_a_matched_instance(self, max_defects: int) -> None:
        """The limit reached while closing a walked instance's groups, at the first line of a valid instance, stops
        the pass there with the same counts as line by line."""
        text = (D0010 + "026|120002330596X|V|\n026|1200023305967|V|\n028|F75A 00802|D|\n"
                "030|S|20160222000000|56311.0|||T|N|\nZPT|0000475656|4||2|20160302154650|\n")
        fast = by_blocks(text, max_defects=max_defects)
        assert outcome(fast) == outcome(by_lines(text, max_defects=max_defects))
        assert fast.defects_truncated is (max_defects == 1)

    def test_iterated_then_checked(self) -> None:
        """A parse already iterated is checked to its end line by line, with the same report."""
        text = "".join(d0275(3))
        reader = FlowFileReader(DEFINITIONS)
        parse = reader.read(io.StringIO(text, newline=""))
        next(parse)
        assert outcome(parse.check()) == outcome(by_lines(text))

    @pytest.mark.parametrize("reference", REFERENCES)
    def test_pool_checksum(self, reference: str) -> None:
        """Pool files are summed record by record by blocks too: a valid checksum passes, a changed one fails."""
        lines = pool_file(DEFINITIONS[reference], 11)
        text = "".join(lines)
        assert by_blocks(text, block_lines=3).ok and outcome(by_blocks(text)) == outcome(by_lines(text))
        trailer = lines[-1].split("|")
        lines[-1] = "|".join([*trailer[:2], str(int(trailer[2]) ^ 1)]) + "\n"
        changed = "".join(lines)
        fast = by_blocks(changed, block_lines=3)
        assert [defect.rule for defect in fast.defects] == ["trailer-checksum"]
        assert outcome(fast) == outcome(by_lines(changed))


def test_definitions_compiled_for_blocks(definitions: DefinitionSet) -> None:
    """Every shipped flow can be read by blocks, each level-1 group matched in both line styles and both modes."""
    for definition in definitions.values():
        assert definition.boundary is not None, definition.reference
        for group in definition.level1:
            for terminated, strict in itertools.product((True, False), repeat=2):
                assert definition.instance_pattern(group, terminated, strict) is not None, group.code
