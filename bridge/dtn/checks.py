"""Named checks the catalogue implies beyond an item's format: a flow definition refers to them by name.

`mpan_check_digit` (on an item): an MPAN Core (J0003) is 13 digits whose last is the check digit the distributors
publish (weights 3, 5, 7, 13, 17, 19, 23, 29, 31, 37, 41, 43 over the first 12 digits, sum mod 11 mod 10).
`settlement_periods` (on a half-hourly period group): a day has 48 half hours, except in local-time flows on the GB
clock-change days (the last Sundays of March and October): 46 on the spring day, 50 on the autumn day.

Each check has a severity an operator sets (`checks:` in the config, `--check NAME=SEVERITY` on the command line):
`error` refuses the file, `warn` reports the defect and lets the file through, `off` skips the check.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import date, timedelta
from typing import Final, Literal, cast

Severity = Literal["error", "warn", "off"]
Clock = Literal["local", "utc"]
SEVERITIES: Final = ("error", "warn", "off")
CLOCKS: Final = ("local", "utc")

MPAN_CHECK_DIGIT: Final = "mpan_check_digit"
SETTLEMENT_PERIODS: Final = "settlement_periods"
ITEM_CHECKS: Final = (MPAN_CHECK_DIGIT,)
GROUP_CHECKS: Final = (SETTLEMENT_PERIODS,)
# settlement_periods is an error too: a count that contradicts its date cannot be lined up with the day's settlement
# periods, so every consumer would put consumption in the wrong half hours; the catalogue's range (46,48,50) alone
# lets a truncated or padded ordinary day through.
DEFAULT_SEVERITIES: Final[Mapping[str, Severity]] = {MPAN_CHECK_DIGIT: "error", SETTLEMENT_PERIODS: "error"}

_MPAN_WEIGHTS: Final = (3, 5, 7, 13, 17, 19, 23, 29, 31, 37, 41, 43)
_DIGITS: Final = frozenset("0123456789")


def rule(name: str) -> str:
    """The defect rule of a check: `mpan_check_digit` -> `mpan-check-digit`, like the reader's other rules."""
    return name.replace("_", "-")


def severities(overrides: Mapping[str, str] | None = None) -> dict[str, Severity]:
    """Every check's severity: the defaults with `overrides` applied; ValueError names an unknown check or value."""
    chosen = dict(DEFAULT_SEVERITIES)
    for name, severity in (overrides or {}).items():
        if name not in chosen:
            raise ValueError(f"{name!r} is not a check ({', '.join(sorted(chosen))})")
        if severity not in SEVERITIES:
            raise ValueError(f"{name}: {severity!r} is not a severity ({', '.join(SEVERITIES)})")
        chosen[name] = cast(Severity, severity)
    return chosen


def mpan_check_sum(digits: str, weights: tuple[int, ...] = _MPAN_WEIGHTS) -> int:
    """The weighted sum of `digits` (the first 12 of an MPAN Core, or a run of them with its weights)."""
    return sum(int(digit) * weight for digit, weight in zip(digits, weights, strict=False))


def mpan_check_digit(prefix: str) -> int:
    """The check digit of the first 12 digits of an MPAN Core."""
    return mpan_check_sum(prefix[:12]) % 11 % 10


# The weighted sum of each 3-digit quarter of the 12 digits, by its text: the reader's fast path checks every MPAN
# Core of a file with four lookups instead of twelve multiplications (4,000 entries, built once at import).
_QUARTERS: Final = tuple({f"{n:03d}": mpan_check_sum(f"{n:03d}", _MPAN_WEIGHTS[3 * q:3 * q + 3])
                          for n in range(1000)} for q in range(4))


def mpan_valid(text: str) -> bool:
    """True when `text` is 13 ASCII digits with the right check digit: `mpan_problem(text) is None`, faster."""
    first, second, third, fourth = _QUARTERS
    try:
        total = first[text[:3]] + second[text[3:6]] + third[text[6:9]] + fourth[text[9:12]]
    except KeyError:
        return False
    return len(text) == 13 and ord(text[12]) - 48 == total % 11 % 10


def mpan_problem(text: str) -> str | None:
    """What is wrong with an MPAN Core, or None: exactly 13 digits, the last one the check digit."""
    if len(text) != 13 or not _DIGITS.issuperset(text):
        return f"{text[:20]!r} is not an MPAN Core: it must be exactly 13 digits"
    expected = mpan_check_digit(text)
    if ord(text[12]) - 48 != expected:
        return f"{text!r} fails the MPAN check digit: its last digit must be {expected}"
    return None


def last_sunday(year: int, month: int) -> date:
    """The last Sunday of `month` (March or October: the GB clock changes)."""
    end = date(year + (month == 12), month % 12 + 1, 1) - timedelta(days=1)
    return end - timedelta(days=(end.weekday() + 1) % 7)


def settlement_period_count(day: date, clock: Clock) -> int:
    """How many half-hourly periods `day` has: 46 on the spring clock change and 50 on the autumn one in local time
    (one hour fewer, one hour more), 48 otherwise and always in UTC."""
    if clock == "utc" or day.month not in (3, 10) or day.weekday() != 6 or day.day < 25:
        return 48  # the last Sunday of a 31-day month falls on the 25th or later
    return 46 if day.month == 3 else 50


def periods_problem(date_text: str, count: int, clock: Clock) -> str | None:
    """What is wrong with `count` period instances under a date written ccyymmdd, or None."""
    if count == 48 and (clock == "utc" or date_text[4:6] not in ("03", "10")):
        return None  # the common case, without making a date
    day = date(int(date_text[:4]), int(date_text[4:6]), int(date_text[6:8]))
    expected = settlement_period_count(day, clock)
    if count == expected:
        return None
    kind = {46: "the spring clock change, ", 50: "the autumn clock change, "}.get(expected, "")
    return (f"{count} half-hourly periods, but {day.isoformat()} ({kind}{clock} time) has {expected}")
