"""RFC 8785 canonicalization: the RFC's examples, every code point, refusals, and a hypothesis cross-check."""

from __future__ import annotations

import dataclasses
import datetime as dt
import enum
import json
import re
import uuid
from typing import Any

import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from bridge.errors import SignatureError
from bridge.signing import canonicalize
from bridge.signing.jcs import _slow_canonicalize


def reference_jcs(value: Any) -> str:
    """Independent, literal RFC 8785 for str/int/bool/null/object/array, written from the spec (test only)."""
    if value is None:
        return "null"
    if value is True:
        return "true"
    if value is False:
        return "false"
    if isinstance(value, int):
        assert abs(value) <= 2**53 - 1
        return str(value)  # ECMAScript Number::toString of a safe integer is its plain decimal form
    if isinstance(value, str):
        out = ['"']
        for ch in value:
            code = ord(ch)
            if ch == '"':
                out.append('\\"')
            elif ch == "\\":
                out.append("\\\\")
            elif code < 0x20:
                short = {0x08: "\\b", 0x09: "\\t", 0x0A: "\\n", 0x0C: "\\f", 0x0D: "\\r"}
                out.append(short.get(code, f"\\u{code:04x}"))
            else:
                out.append(ch)
        out.append('"')
        return "".join(out)
    if isinstance(value, list):
        return "[" + ",".join(reference_jcs(v) for v in value) + "]"
    if isinstance(value, dict):
        keys = sorted(value, key=utf16_code_units)
        return "{" + ",".join(reference_jcs(k) + ":" + reference_jcs(value[k]) for k in keys) + "}"
    raise TypeError(type(value))


def utf16_code_units(text: str) -> list[int]:
    """The UTF-16 code units of `text`, computed by hand (RFC 2781 §2.1) rather than by a codec."""
    units: list[int] = []
    for ch in text:
        code = ord(ch)
        if code < 0x10000:
            units.append(code)
        else:
            code -= 0x10000
            units += [0xD800 + (code >> 10), 0xDC00 + (code & 0x3FF)]
    return units


scalar_text = st.text(st.characters(exclude_categories=("Cs",)), max_size=12)
json_values = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**53 - 1), 2**53 - 1) | scalar_text,
    lambda children: st.lists(children, max_size=5) | st.dictionaries(scalar_text, children, max_size=5),
    max_leaves=30,
)


class TestRfc8785Examples:
    """The examples of RFC 8785 that use the value types we sign."""

    def test_sorting_example_3_2_3(self) -> None:
        """§3.2.3: keys sort by UTF-16 code units (the emoji sorts before U+FB33), not by UTF-8 bytes."""
        value = {
            "\u20ac": "Euro Sign",
            "\r": "Carriage Return",
            "\ufb33": "Hebrew Letter Dalet With Dagesh",
            "1": "One",
            "\U0001f600": "Emoji: Grinning Face",
            "\u0080": "Control",
            "\u00f6": "Latin Small Letter O With Diaeresis",
        }
        expected = (
            '{"\\r":"Carriage Return","1":"One","\u0080":"Control","\u00f6":"Latin Small Letter O With Diaeresis",'
            '"\u20ac":"Euro Sign","\U0001f600":"Emoji: Grinning Face","\ufb33":"Hebrew Letter Dalet With Dagesh"}'
        )
        assert canonicalize(value) == expected.encode("utf-8")

    def test_primitives_example_3_2_2_without_numbers(self) -> None:
        """§3.2.2: the string and literals of the example serialize exactly as the RFC shows."""
        value = json.loads(
            r'{"string": "\u20ac$\u000F\u000aA\u0027\u0042\u0022\u005c\\\"\/", "literals": [null, true, false]}'
        )
        expected = '{"literals":[null,true,false],"string":"\u20ac$\\u000f\\nA\'B\\"\\\\\\\\\\"/"}'
        assert canonicalize(value) == expected.encode("utf-8")

    def test_primitives_example_numbers_are_refused(self) -> None:
        """§3.2.2's numbers are floats: we refuse them instead of risking an inexact form."""
        value = json.loads(
            '{"numbers": [333333333.33333329, 1E30, 4.50, 2e-3, 0.000000000000000000000000001]}'
        )
        with pytest.raises(SignatureError) as info:
            canonicalize(value)
        assert info.value.reason == "unsupported_value"

    @pytest.mark.parametrize(
        ("number", "text"),
        [
            (0, "0"),
            (1, "1"),
            (-1, "-1"),
            (9007199254740991, "9007199254740991"),
            (-9007199254740991, "-9007199254740991"),
        ],
    )
    def test_appendix_b_integers(self, number: int, text: str) -> None:
        """Appendix B: the safe integers print in plain decimal."""
        assert canonicalize([number]) == f"[{text}]".encode()

    def test_nested_example(self) -> None:
        """Objects nest, keys sort at every level, no whitespace anywhere."""
        value = {"b": [3, {"z": 1, "a": True}], "a": {"d": None, "c": "x"}}
        assert canonicalize(value) == b'{"a":{"c":"x","d":null},"b":[3,{"a":true,"z":1}]}'


class TestStringEscaping:
    """orjson's string escaping equals ECMAScript JSON.stringify for every Unicode scalar value."""

    def test_every_code_point_matches_reference(self) -> None:
        """All 1,112,064 scalar values, in chunks, give the reference output (the equivalence proof for strings)."""
        scalars = [chr(c) for c in range(0x110000) if not 0xD800 <= c <= 0xDFFF]
        for start in range(0, len(scalars), 4096):
            chunk = "".join(scalars[start : start + 4096])
            assert canonicalize(chunk) == reference_jcs(chunk).encode("utf-8"), hex(ord(chunk[0]))

    def test_each_control_character_escape(self) -> None:
        """Each of U+0000..U+001F escapes exactly like JSON.stringify (lowercase hex), and U+007F is literal."""
        for code in range(0x20):
            assert canonicalize(chr(code)) == reference_jcs(chr(code)).encode()
        assert canonicalize("\x7f\u2028\u2029/") == '"\x7f\u2028\u2029/"'.encode()

    @pytest.mark.parametrize("text", ["\ud800", "a\udfffb", {"\udc00": 1}])
    def test_lone_surrogates_refused(self, text: Any) -> None:
        """A lone surrogate has no UTF-8 form: refused, in values and in keys."""
        with pytest.raises(SignatureError) as info:
            canonicalize(text)
        assert info.value.reason == "unsupported_value"


class TestRefusals:
    """Values JCS cannot represent exactly are refused with reason unsupported_value."""

    class Colour(enum.Enum):
        RED = "red"

    @dataclasses.dataclass
    class Point:
        x: int

    class MyStr(str):
        pass

    class MyInt(int):
        pass

    @pytest.mark.parametrize(
        "value",
        [
            1.5,
            1.0,
            float("nan"),
            float("inf"),
            {"a": [1, {"b": 2.0}]},
            2**53,
            -(2**53),
            2**64,
            {1: "a"},
            {("a",): 1},
            b"bytes",
            uuid.UUID(int=1),
            dt.datetime(2020, 1, 1),
            Colour.RED,
            Point(1),
            MyStr("x"),
            {"k": MyInt(3)},
            {"k": {1, 2}},
            orjson.Fragment(b"1.5"),
            {"k": object()},
        ],
        ids=lambda value: re.sub(r" at 0x[0-9a-f]+", "", repr(value)),  # the same ids in every xdist worker
    )
    def test_refused(self, value: Any) -> None:
        """Floats, big ints, non-string keys and non-JSON types all raise unsupported_value."""
        with pytest.raises(SignatureError) as info:
            canonicalize(value)
        assert info.value.reason == "unsupported_value"

    def test_cycle_refused(self) -> None:
        """A self-containing structure is refused, not looped over."""
        value: dict[str, Any] = {}
        value["self"] = value
        with pytest.raises(SignatureError):
            canonicalize(value)

    def test_deep_nesting_refused(self) -> None:
        """Nesting deeper than orjson's limit is refused cleanly."""
        value: Any = "x"
        for _ in range(300):
            value = [value]
        with pytest.raises(SignatureError):
            canonicalize(value)

    def test_boundary_integers_accepted(self) -> None:
        """±(2**53-1) are the I-JSON limits and are accepted."""
        assert canonicalize([2**53 - 1, -(2**53 - 1)]) == b"[9007199254740991,-9007199254740991]"

    def test_tuples_are_arrays(self) -> None:
        """A tuple serializes as a JSON array, as it would on the wire."""
        assert canonicalize({"a": (1, "b")}) == b'{"a":[1,"b"]}'


class TestKeyOrder:
    """Key order follows UTF-16 code units, including where that differs from orjson's code point order."""

    def test_supplementary_before_private_use(self) -> None:
        """U+10000 (surrogates D800 DC00) sorts before U+E000 in UTF-16 though after it in UTF-8."""
        assert canonicalize({"\ue000": 1, "\U00010000": 2}) == '{"\U00010000":2,"\ue000":1}'.encode()

    def test_nested_non_ascii_keys_fall_back(self) -> None:
        """The slow path also applies inside arrays and nested objects."""
        value = {"a": [{"\uffff": 1, "\U0001f600": 2}], "b": "é"}
        assert canonicalize(value) == reference_jcs(value).encode()

    def test_slow_path_equals_fast_path_on_ascii(self) -> None:
        """The fallback serializer agrees with the fast path where both apply."""
        value = {"z": [1, True, None, "é\n"], "a": {"y": -5}}
        assert _slow_canonicalize(value).encode() == canonicalize(value)

    @settings(max_examples=400, deadline=None)
    @given(json_values)
    def test_matches_reference_implementation(self, value: Any) -> None:
        """Hypothesis: canonicalize equals the independent reference on arbitrary allowed values."""
        assert canonicalize(value) == reference_jcs(value).encode("utf-8")

    @settings(max_examples=200, deadline=None)
    @given(
        st.dictionaries(
            st.text(st.characters(exclude_categories=("Cs",)), min_size=1, max_size=3),
            st.integers(0, 9),
            min_size=2,
            max_size=8,
        )
    )
    def test_key_order_on_non_ascii_keys(self, value: dict[str, int]) -> None:
        """Hypothesis on keys alone, where the UTF-16 rule matters most."""
        assert canonicalize(value) == reference_jcs(value).encode("utf-8")

    @settings(max_examples=200, deadline=None)
    @given(json_values)
    def test_round_trip_is_stable(self, value: Any) -> None:
        """Parsing canonical output and canonicalizing again gives the same bytes (idempotence)."""
        once = canonicalize(value)
        assert canonicalize(orjson.loads(once)) == once
