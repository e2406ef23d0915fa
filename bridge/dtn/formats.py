"""DTC logical formats (DTC 15.4 Domains): how an item looks in a file and how it is typed in an event.

Each `LogicalFormat` is compiled once from its text (`NUM(9,1)`) and then offers a regular-expression fragment (used to
check whole lines at C speed), a precise check for error messages, and the two conversions between the file text and
the event value. The conversions are exact inverses for every text the check accepts, which is what makes the DTN ->
event -> DTN round trip byte-exact.
"""

from __future__ import annotations

import calendar
import re
from dataclasses import dataclass
from typing import Literal

Kind = Literal["CHAR", "NUM", "INT", "DATE", "DATETIME", "TIME", "BOOLEAN"]
JsonValue = str | int | bool

_FORMAT = re.compile(r"^(?P<sign>±|\+/-)?(?P<kind>CHAR|NUM|INT|DATE|DATETIME|TIME|BOOLEAN)"
                     r"(?:\((?P<n>\d+)(?:,(?P<m>\d+))?\))?$")
# A calendar date ccyymmdd, exactly: DTC Domains' years 1950-2199, each month's own length, and 29 February only in
# leap years (every fourth year, 2000 included and 2100 not). Exact, so that a whole line can be judged by one match.
_DATE = ("(?:(?:19[5-9][0-9]|2[01][0-9][0-9])"
         "(?:(?:0[13578]|1[02])(?:0[1-9]|[12][0-9]|3[01])|(?:0[469]|11)(?:0[1-9]|[12][0-9]|30)"
         "|02(?:0[1-9]|1[0-9]|2[0-8]))"
         "|(?:19(?:5[26]|[68][048]|[79][26])|20(?:[02468][048]|[13579][26])|21(?:0[48]|[2468][048]|[13579][26]))0229)")
# An INT of more digits stays a string in events: JSON integers beyond 64 bits are not portable (orjson refuses
# them). Only INT(20) items of DTC 15.4 (D0317-D0326) are that long.
INT_DIGITS_AS_NUMBER = 18
_HMS = r"(?:[01][0-9]|2[0-3])[0-5][0-9][0-5][0-9]"
_ISO_DATE = re.compile(r"^(\d{4})-(\d{2})-(\d{2})$")
_ISO_DATETIME = re.compile(r"^(\d{4})-(\d{2})-(\d{2})T(\d{2}):(\d{2}):(\d{2})$")
_ISO_TIME = re.compile(r"^(\d{2}):(\d{2}):(\d{2})$")
# C0 and C1 controls, DEL and the Unicode line and paragraph separators: a CHAR value rendered from an event never
# holds one, so that no value can break or add a line of the file (whatever splits its lines).
CONTROL_RANGE = "\x00-\x1f\x7f-\x9f\u2028\u2029"
CONTROL = re.compile(f"[{CONTROL_RANGE}]")
#: The longest line a reader accepts by default (`inbound.max_line_bytes`): far above any real DTN line (a few
#: hundred bytes); a longer one is a defect and is never held in memory whole.
DEFAULT_MAX_LINE_BYTES = 65536


class FormatSyntaxError(ValueError):
    """A format text in a flow definition is not one of the DTC logical formats."""


QUOTE_CHARS = 40  # a defect quotes at most this much of a value


def quoted(value: object) -> str:
    """A value as a defect text quotes it: its repr, cut after QUOTE_CHARS characters, so that one huge item cannot
    make a huge report, ledger row or dead-letter reason."""
    if isinstance(value, str):
        return repr(value) if len(value) <= QUOTE_CHARS else f"{value[:QUOTE_CHARS]!r}... ({len(value)} characters)"
    shown = repr(value)
    return shown if len(shown) <= QUOTE_CHARS else f"{shown[:QUOTE_CHARS]}..."


@dataclass(frozen=True, slots=True)
class LogicalFormat:
    """One DTC logical format, e.g. CHAR(10), NUM(9,1), ±NUM(7,1), INT(12), DATE, DATETIME, TIME, BOOLEAN."""

    text: str
    kind: Kind
    length: int | None = None
    scale: int = 0
    signed: bool = False

    @classmethod
    def parse(cls, text: str) -> LogicalFormat:
        """Compile a format text; raise FormatSyntaxError when it is not a DTC logical format."""
        match = _FORMAT.match(text.strip())
        if not match:
            raise FormatSyntaxError(f"{text!r} is not a logical format (CHAR(n), NUM(n,m), ±NUM(n,m), INT(n), "
                                    "DATE, DATETIME, TIME, BOOLEAN)")
        kind: Kind = match["kind"]  # type: ignore[assignment]
        length = int(match["n"]) if match["n"] else None
        scale = int(match["m"]) if match["m"] else 0
        signed = bool(match["sign"])
        if kind in ("CHAR", "NUM", "INT") and not length:
            raise FormatSyntaxError(f"{text!r}: {kind} needs a length, e.g. {kind}(4)")
        if kind in ("DATE", "DATETIME", "TIME", "BOOLEAN"):
            if signed or scale:
                raise FormatSyntaxError(f"{text!r}: {kind} takes no sign or scale")
            length = None  # DATE(8) and BOOLEAN(1) appear in DTC 15.4; the length is implied by the kind
        if kind != "NUM" and (signed or scale):
            raise FormatSyntaxError(f"{text!r}: only NUM takes a sign or a scale")
        if length is not None and scale >= length and kind == "NUM":
            raise FormatSyntaxError(f"{text!r}: the scale must be smaller than the number of digits")
        canonical = f"{'±' if signed else ''}{kind}" + (f"({length}{f',{scale}' if scale else ''})" if length else "")
        return cls(canonical, kind, length, scale, signed)

    # -- checking ---------------------------------------------------------------------------------------------

    @property
    def pattern(self) -> str:
        """A regular-expression fragment (no groups) matching exactly the texts `check` accepts within one line.

        CHAR excludes control characters (line breaks among them), as `check` does: that lets the reader match many
        lines at once, and a file it accepts can always be written again from its events.
        """
        if self.kind == "CHAR":
            return f"[^|{CONTROL_RANGE}]{{1,{self.length}}}"
        if self.kind == "INT":
            return f"[0-9]{{1,{self.length}}}"
        if self.kind == "NUM":
            assert self.length is not None
            integer_digits = self.length - self.scale
            sign = "-?" if self.signed else ""
            fraction = f"(?:\\.[0-9]{{1,{self.scale}}})?" if self.scale else ""
            return f"{sign}[0-9]{{1,{integer_digits}}}{fraction}"
        if self.kind == "DATE":
            return _DATE
        if self.kind == "DATETIME":
            return _DATE + _HMS
        if self.kind == "TIME":
            return _HMS
        return "[TF]"

    def check(self, text: str) -> str | None:
        """Say what is wrong with a non-empty text, or None when it is valid."""
        if self.kind == "CHAR":
            assert self.length is not None
            if "|" in text:
                return f"{quoted(text)} contains the delimiter '|'"
            if CONTROL.search(text):
                return f"{quoted(text)} contains a control character"
            if len(text) <= self.length:
                return None
            return f"{quoted(text)} is {len(text)} characters, longer than {self.length}"
        if self.kind in ("INT", "NUM"):
            return self._check_number(text)
        if self.kind == "BOOLEAN":
            return None if text in ("T", "F") else f"{quoted(text)} is not a boolean (T or F)"
        if self.kind == "TIME":
            return None if re.fullmatch(_HMS, text) else f"{quoted(text)} is not a time (hhmmss)"
        return self._check_date(text)

    def _check_number(self, text: str) -> str | None:
        assert self.length is not None
        body = text[1:] if self.signed and text.startswith("-") else text
        integer, dot, fraction = body.partition(".")
        if not integer.isdigit() or not integer.isascii() or (dot and not (fraction.isdigit() and fraction.isascii())):
            return f"{quoted(text)} is not a number"
        if dot and self.scale == 0:
            return f"{quoted(text)} has decimals, but {self.text} is a whole number"
        if len(fraction) > self.scale:
            return f"{quoted(text)} has {len(fraction)} decimals, more than {self.scale}"
        if len(integer) > self.length - self.scale:
            return f"{quoted(text)} has more than {self.length - self.scale} digits before the decimal point"
        return None

    def _check_date(self, text: str) -> str | None:
        size = 8 if self.kind == "DATE" else 14
        shape = "ccyymmdd" if self.kind == "DATE" else "ccyymmddhhmmss"
        if len(text) != size or not text.isdigit() or not text.isascii():
            return f"{quoted(text)} is not a {self.kind.lower()} ({shape})"
        year, month, day = int(text[:4]), int(text[4:6]), int(text[6:8])
        if not 1950 <= year <= 2199:
            return f"{quoted(text)}: year {year} is outside 1950-2199"
        if not 1 <= month <= 12 or not 1 <= day <= calendar.monthrange(year, month)[1]:
            return f"{quoted(text)} is not a calendar date"
        if size == 14 and not re.fullmatch(_HMS, text[8:]):
            return f"{quoted(text)} has no valid time of day"
        return None

    # -- conversion ---------------------------------------------------------------------------------------------

    def to_json(self, text: str) -> JsonValue:
        """The event value of a valid, non-empty file text: ISO 8601 dates, booleans, integers; decimals stay strings
        so that they keep their scale (`56311.0`)."""
        kind = self.kind
        if kind == "DATE":
            return f"{text[:4]}-{text[4:6]}-{text[6:8]}"
        if kind == "DATETIME":
            return f"{text[:4]}-{text[4:6]}-{text[6:8]}T{text[8:10]}:{text[10:12]}:{text[12:14]}"
        if kind == "TIME":
            return f"{text[:2]}:{text[2:4]}:{text[4:6]}"
        if kind == "BOOLEAN":
            return text == "T"
        if kind == "INT" and (text == "0" or not text.startswith("0")) and len(text) <= INT_DIGITS_AS_NUMBER:
            return int(text)  # a zero-padded INT stays a string, so the file can be written back byte for byte
        return text

    @property
    def converts(self) -> bool:
        """Whether `to_json` can differ from the text (CHAR and NUM values are events' strings as written)."""
        return self.kind not in ("CHAR", "NUM")

    def from_json(self, value: object) -> str:
        """The file text of an event value; raise ValueError when the value cannot be this format."""
        kind = self.kind
        if kind == "BOOLEAN":
            if isinstance(value, bool):
                return "T" if value else "F"
            raise ValueError(f"{quoted(value)} is not a boolean")
        if isinstance(value, bool):
            raise ValueError(f"{quoted(value)} is a boolean, not {self.text}")  # noqa: TRY004 (the documented error)
        if kind in ("DATE", "DATETIME", "TIME"):
            pattern = {"DATE": _ISO_DATE, "DATETIME": _ISO_DATETIME, "TIME": _ISO_TIME}[kind]
            if not isinstance(value, str) or not (match := pattern.match(value)):
                example = {"DATE": "2016-02-22", "DATETIME": "2016-02-22T00:00:00", "TIME": "15:31:51"}[kind]
                raise ValueError(f"{quoted(value)} is not an ISO 8601 {kind.lower()} like {example}")
            text = "".join(match.groups())
        elif isinstance(value, int) and (kind == "INT" or (kind == "NUM" and not self.scale)):
            text = str(value)
        elif isinstance(value, str):
            text = value
        else:
            expected = "string" if kind != "INT" else "whole number"
            raise ValueError(f"{quoted(value)} is not a {expected} for {self.text}")
        problem = self.check(text) if text else "empty"
        if problem:
            raise ValueError(problem)
        return text
