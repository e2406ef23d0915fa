"""DTC logical formats: checks and the exact file <-> event conversions."""

from __future__ import annotations

import re

import orjson
import pytest
from hypothesis import given
from hypothesis import strategies as st

from bridge.dtn.formats import FormatSyntaxError, LogicalFormat


class TestParse:
    def test_canonical_forms(self) -> None:
        """Formats from the Data Item Catalogue compile, with implied lengths dropped."""
        assert LogicalFormat.parse("±NUM(7,1)") == LogicalFormat("±NUM(7,1)", "NUM", 7, 1, True)
        assert LogicalFormat.parse("BOOLEAN(1)").text == "BOOLEAN"
        assert LogicalFormat.parse("DATE(8)").text == "DATE"

    @pytest.mark.parametrize("text", ["NUM", "CHAR", "NUM(3,3)", "±CHAR(2)", "FLOAT(3)", "DATE(8,2)", ""])
    def test_rejects_non_formats(self, text: str) -> None:
        """Texts that are not DTC formats are refused with a reason."""
        with pytest.raises(FormatSyntaxError):
            LogicalFormat.parse(text)


class TestCheck:
    @pytest.mark.parametrize(("fmt", "text", "problem"), [
        ("NUM(9,1)", "12x4", "'12x4' is not a number"),
        ("NUM(9,1)", "123456789", "more than 8 digits"),
        ("NUM(9,1)", "1.25", "2 decimals, more than 1"),
        ("NUM(3)", "1.0", "has decimals"),
        ("NUM(3)", "-1", "not a number"),
        ("DATE", "20179568", "not a calendar date"),
        ("DATE", "20230229", "not a calendar date"),
        ("DATE", "18991231", "outside 1950-2199"),
        ("DATETIME", "20230101246000", "no valid time"),
        ("BOOLEAN", "Y", "not a boolean"),
        ("CHAR(2)", "ABC", "longer than 2"),
        ("INT(3)", "１２", "not a number"),
    ])
    def test_problems(self, fmt: str, text: str, problem: str) -> None:
        """Each kind of wrong text gets a message saying what is wrong."""
        message = LogicalFormat.parse(fmt).check(text)
        assert message is not None and problem in message

    @pytest.mark.parametrize(("fmt", "text"), [("NUM(9,1)", "56311.0"), ("NUM(9,1)", "7"), ("±NUM(9,3)", "-0.240"),
                                              ("DATE", "20240229"), ("DATETIME", "20160222235959"),
                                              ("TIME", "000000"), ("CHAR(10)", "F75A 00802"), ("INT(12)", "000042")])
    def test_valid(self, fmt: str, text: str) -> None:
        """Texts seen in real files are valid."""
        assert LogicalFormat.parse(fmt).check(text) is None

    @given(st.sampled_from(["NUM(9,1)", "±NUM(7,1)", "NUM(13)", "INT(4)", "DATE", "DATETIME", "TIME", "BOOLEAN",
                            "CHAR(5)"]), st.text(alphabet="0123456789.-TFAB |", max_size=16))
    def test_pattern_agrees_with_check(self, fmt: str, text: str) -> None:
        """The fast regular expression accepts exactly what the precise check accepts (it is calendar-exact)."""
        logical = LogicalFormat.parse(fmt)
        by_pattern = re.fullmatch(logical.pattern, text) is not None
        by_check = bool(text) and logical.check(text) is None
        assert by_pattern == by_check


class TestConversion:
    @pytest.mark.parametrize(("fmt", "text", "value"), [
        ("DATE", "20160222", "2016-02-22"), ("DATETIME", "20160222153151", "2016-02-22T15:31:51"),
        ("TIME", "153151", "15:31:51"), ("BOOLEAN", "T", True), ("BOOLEAN", "F", False),
        ("NUM(9,1)", "56311.0", "56311.0"), ("INT(12)", "42", 42), ("INT(12)", "0042", "0042"),
        ("INT(20)", "999999999999999999", 999999999999999999),
        ("INT(20)", "99999999999999999999", "99999999999999999999"), ("CHAR(10)", " A ", " A ")])
    def test_typed_values(self, fmt: str, text: str, value: object) -> None:
        """Values are typed for consumers and convert back to the very same text."""
        logical = LogicalFormat.parse(fmt)
        assert logical.to_json(text) == value
        assert logical.from_json(value) == text
        assert orjson.loads(orjson.dumps(value)) == value  # an event can carry it (orjson refuses ints over 64 bits)

    @pytest.mark.parametrize(("fmt", "value"), [("DATE", "2016-2-22"), ("BOOLEAN", "T"), ("NUM(9,1)", 1.5),
                                                ("INT(3)", True), ("INT(3)", 1000),
                                                ("DATETIME", "2016-02-30T00:00:00")])
    def test_bad_event_values(self, fmt: str, value: object) -> None:
        """A value that cannot be written in the format is refused."""
        with pytest.raises(ValueError):
            LogicalFormat.parse(fmt).from_json(value)

    @pytest.mark.parametrize("value", ["a\nb", "a\rb", "\x00", "a\tb", "\x0b", "\x1c", "\x7f", "\x85", "\u2028",
                                       "\u2029"])
    def test_char_values_refuse_control_characters_on_render(self, value: str) -> None:
        """Whatever splits the file's lines (ours, or a reader that also splits on VT, FS, NEL or U+2028), no CHAR
        value rendered from an event holds it."""
        with pytest.raises(ValueError, match="control character|delimiter"):
            LogicalFormat.parse("CHAR(10)").from_json(value)
        assert LogicalFormat.parse("CHAR(10)").from_json("a b~é") == "a b~é"
