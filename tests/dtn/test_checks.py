"""The named checks (bridge/dtn/checks.py) and how flow definitions refer to them."""

from __future__ import annotations

from datetime import date, timedelta
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from bridge.dtn.checks import (
    DEFAULT_SEVERITIES,
    last_sunday,
    mpan_check_digit,
    mpan_problem,
    mpan_valid,
    periods_problem,
    settlement_period_count,
    severities,
)
from bridge.dtn.definitions import load_definition, load_definitions
from bridge.errors import FlowDefinitionError
from tests.conftest import REPO, sample

WEIGHTS = [3, 5, 7, 13, 17, 19, 23, 29, 31, 37, 41, 43]


def spelled_out(prefix: str) -> int:
    """The distributors' algorithm as published, step by step: the independent oracle."""
    total = 0
    for digit, weight in zip(prefix, WEIGHTS, strict=True):
        total += int(digit) * weight
    return total % 11 % 10


class TestMpanCheckDigit:
    def test_real_mpans(self) -> None:
        """Every MPAN Core of the real Kraken D0010 sample passes (real files carry valid check digits)."""
        lines = sample("DTC5259515123502080915D0010").read_text().splitlines()
        mpans = [line.split("|")[1] for line in lines if line.startswith("026|")]
        assert len(mpans) == 11 and [mpan for mpan in mpans if mpan_problem(mpan)] == []

    @given(prefix=st.text("0123456789", min_size=12, max_size=12))
    def test_check_digit_of_any_prefix(self, prefix: str) -> None:
        """For any 12 digits exactly one last digit passes: the published one."""
        assert mpan_check_digit(prefix) == spelled_out(prefix)
        for last in "0123456789":
            problem = mpan_problem(prefix + last)
            assert (problem is None) == (int(last) == spelled_out(prefix))
            if problem is not None:
                assert problem == f"{prefix + last!r} fails the MPAN check digit: its last digit must be " \
                                  f"{spelled_out(prefix)}"

    @given(text=st.one_of(st.text("0123456789", min_size=11, max_size=14), st.text(min_size=0, max_size=14)))
    def test_fast_form_agrees(self, text: str) -> None:
        """`mpan_valid`, the reader's fast path's form, agrees with `mpan_problem` on any text."""
        assert mpan_valid(text) == (mpan_problem(text) is None)

    @pytest.mark.parametrize("text", ["120002330596", "12000233059670", "12000233059a7", "１２０００２３３０５９６７"])
    def test_not_13_digits(self, text: str) -> None:
        """NUM(13) admits shorter numbers; an MPAN Core is exactly 13 ASCII digits."""
        assert mpan_problem(text) == f"{text!r} is not an MPAN Core: it must be exactly 13 digits"


class TestSettlementPeriods:
    @given(year=st.integers(1972, 2199))
    def test_clock_change_days(self, year: int) -> None:
        """The last Sundays of March and October have 46 and 50 periods in local time, every other day 48, and
        every day 48 in UTC."""
        for month, count in ((3, 46), (10, 50)):
            day = date(year, month, 31)
            while day.weekday() != 6:
                day -= timedelta(days=1)
            assert last_sunday(year, month) == day
            assert settlement_period_count(day, "local") == count
            assert settlement_period_count(day, "utc") == 48
            for other in (day - timedelta(days=7), day - timedelta(days=1), day + timedelta(days=1),
                          day + timedelta(days=7)):
                assert settlement_period_count(other, "local") == 48

    @given(day=st.dates(date(1950, 1, 1), date(2199, 12, 31)))
    def test_any_day(self, day: date) -> None:
        """A day differs from 48 exactly when it is one of its year's two clock-change days."""
        changes = {last_sunday(day.year, 3): 46, last_sunday(day.year, 10): 50}
        assert settlement_period_count(day, "local") == changes.get(day, 48)
        assert settlement_period_count(day, "utc") == 48

    def test_problem_text(self) -> None:
        assert periods_problem("20260329", 46, "local") is None
        assert periods_problem("20260329", 48, "local") == \
            "48 half-hourly periods, but 2026-03-29 (the spring clock change, local time) has 46"
        assert periods_problem("20261025", 48, "local") == \
            "48 half-hourly periods, but 2026-10-25 (the autumn clock change, local time) has 50"
        assert periods_problem("20261025", 50, "utc") == "50 half-hourly periods, but 2026-10-25 (utc time) has 48"


class TestSeverities:
    def test_defaults_and_overrides(self) -> None:
        assert severities() == DEFAULT_SEVERITIES == {"mpan_check_digit": "error", "settlement_periods": "error"}
        assert severities({"mpan_check_digit": "warn"}) == {"mpan_check_digit": "warn",
                                                             "settlement_periods": "error"}

    @pytest.mark.parametrize(("overrides", "message"), [
        ({"mpan_checkdigit": "warn"}, "'mpan_checkdigit' is not a check (mpan_check_digit, settlement_periods)"),
        ({"mpan_check_digit": "fatal"}, "mpan_check_digit: 'fatal' is not a severity (error, warn, off)"),
    ])
    def test_refused(self, overrides: dict[str, str], message: str) -> None:
        with pytest.raises(ValueError) as caught:
            severities(overrides)
        assert str(caught.value) == message


D0275 = (REPO / "flow_definitions" / "curated" / "D0275001.yaml").read_text()  # the hand-written overlay
PERIODS = "    checks: [{name: settlement_periods, date_item: date, clock: utc}]\n"
MPAN = "checks: [mpan_check_digit]"


class TestDefinitions:
    def test_shipped_definitions_refer_to_the_checks(self) -> None:
        """Every J0003 item names mpan_check_digit; the half-hourly period groups name settlement_periods."""
        definitions = load_definitions(REPO / "flow_definitions")
        for definition in definitions.values():
            for group in definition.groups:
                for item in group.items:
                    assert (item.ref == "J0003") == ("mpan_check_digit" in item.checks), (definition.reference,
                                                                                          item.key)
        periods = {(reference, group.code, group.periods.date_item.key, group.periods.clock)
                   for reference, definition in definitions.items() for group in definition.groups if group.periods}
        assert periods == {("D0036001", "103", "settlement_date", "local"), ("D0275001", "27B", "date", "utc"),
                           ("D0379001", "66L", "date", "utc"), ("D0362003", "57I", "settlement_date", "local"),
                           ("D0362003", "62I", "settlement_date", "local"),
                           ("D0375001", "64K", "settlement_date", "local"),
                           ("D0380001", "65L", "settlement_date", "local"),
                           ("D0390001", "18C", "settlement_date", "local"),
                           ("D0393001", "85M", "settlement_date", "local")}

    @pytest.mark.parametrize(("old", "new", "key", "message"), [
        (MPAN, "checks: [mpan_digit]", "groups[0].items[0].checks[0]",
         "'mpan_digit' is not an item check (mpan_check_digit)"),
        ('format: "CHAR(2)", presence: mandatory, values', ('format: "CHAR(2)", presence: mandatory, checks: '
         '[mpan_check_digit], values'), "groups[0].items[1].checks[0]",
         "mpan_check_digit needs an item of format NUM(13), not CHAR(2)"),
        (PERIODS, PERIODS.replace("clock: utc", "clock: gmt"), "groups[2].checks[0].clock",
         "'gmt' is not one of local, utc"),
        (PERIODS, PERIODS.replace("date_item: date", "date_item: day"), "groups[2].checks[0].date_item",
         "'day' is not a DATE item of the parent group (date)"),
        (PERIODS, PERIODS.replace("settlement_periods", "periods"), "groups[2].checks[0].name",
         "'periods' is not a group check (settlement_periods)"),
        (PERIODS, PERIODS.replace(", clock: utc", ""), "groups[2].checks[0].clock", "is required"),
    ])
    def test_wrong_references(self, tmp_path: Path, old: str, new: str, key: str, message: str) -> None:
        """A wrong check in a definition is refused at load, naming the file and the key."""
        assert old in D0275
        path = tmp_path / "D0275001.yaml"
        path.write_text(D0275.replace(old, new, 1))
        with pytest.raises(FlowDefinitionError) as caught:
            load_definition(path)
        assert (caught.value.file, caught.value.key, caught.value.message) == ("D0275001.yaml", key, message)
