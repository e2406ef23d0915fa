"""The pure half of the importer: keys, formats, valid sets, overlays and comparison, on plain rows."""

from __future__ import annotations

import re

import pytest
from hypothesis import given
from hypothesis import strategies as st

from bridge.dtn.catalogue import BLANK_FORMAT, compare, item_format, normalise_format, snake, unique, valid_values
from bridge.dtn.catalogue_tables import CatalogueItem, read_flows
from bridge.dtn.overlays import apply_overlay
from bridge.errors import CatalogueError

KEY = re.compile(r"^[a-z][a-z0-9_]*$")  # what the loader accepts


@given(st.text(max_size=40))
def test_keys_are_loader_valid_and_stable(name: str) -> None:
    """Any DTC name gives a key the loader accepts, and the same key every time."""
    key = snake(name, "fallback")
    assert KEY.match(key) and key == snake(name, "fallback")


@given(st.lists(st.sampled_from(["Site Visit", "site-visit", "Site  Visit", "1st Visit", ""]), max_size=8))
def test_unique_keys(names: list[str]) -> None:
    """Keys stay unique within their scope, whatever the names repeat."""
    taken: set[str] = set()
    keys = [unique(snake(name, "group_bbb"), taken, "bbb") for name in names]
    assert len(set(keys)) == len(keys)


@pytest.mark.parametrize(("printed", "ours"), [
    ("NUM(9 ,1)", "NUM(9,1)"), ("DATE(0)", "DATE"), ("BOOLEAN(0)", "BOOLEAN"), ("DATETIME(0)", "DATETIME"),
    ("± NUM(7,1)", "±NUM(7,1)"), ("TIMESTAMP", "DATETIME"), ("±CHAR(3)", "CHAR(3)"), ("(0)", None), ("", None),
    ("CHAR(n)", None)])
def test_formats_as_printed(printed: str, ours: str | None) -> None:
    assert normalise_format(printed) == ours


def test_format_sources_in_order() -> None:
    """Item catalogue, then flow table, then domain, then a curated format, then the blank default with a note."""
    items = {"J0001": CatalogueItem("J0001", "A", (), "", "NUM(9 ,1)", "10"),
             "J0002": CatalogueItem("J0002", "B", (), "Code", "", "5"),
             "J0003": CatalogueItem("J0003", "C", (), "", "", "0")}
    domains = {"Code": "CHAR(n)"}
    known = {"J0003": ("CHAR(4)", "curated")}
    assert item_format("J0001", "NUM(9)", items, domains, {}, "15.4") == ("NUM(9,1)", None)
    assert item_format("J0002", "CHAR(2)", items, domains, {}, "15.4")[0] == "CHAR(2)"
    assert item_format("J0002", "(0)", items, domains, {}, "15.4")[0] == "CHAR(5)"
    assert item_format("J0003", "(0)", items, domains, known, "15.4") == ("CHAR(4)", "curated")
    assert item_format("J0009", "(0)", items, domains, {}, "15.4")[0] == BLANK_FORMAT


@pytest.mark.parametrize(("lines", "values"), [
    (("A - Actual", "F - Final"), {"A": "Actual", "F": "Final"}),
    (("Zero or positive integer within the constraints of the format.",), None),
    (("A - Actual", "or any other code agreed"), None),
    (("ABC - too long for the format",), None)])
def test_valid_sets(lines: tuple[str, ...], values: dict[str, str] | None) -> None:
    """Only a set that is all 'CODE - meaning' lines, every code fitting the format, is an enumeration."""
    assert valid_values(CatalogueItem("J0001", "A", lines, "", "CHAR(1)", "1"), "CHAR(1)") == values


def test_item_without_group_is_named() -> None:
    header = ["Group", "Group Description", "Range", "Condition", *[f"L{n}" for n in range(1, 9)],
              "Item Reference", "Item Name", "Format"]
    tables = [[["Flow Reference:", "D0901"], ["Flow Version:", "001", "Status: Operational"]],
              [header, ["", "", "", "", "", "1", "", "", "", "", "", "", "J0003", "MPAN Core", "NUM(13)"]]]
    with pytest.raises(CatalogueError, match="D0901001: row 2: item J0003 has no group"):
        read_flows(tables)


DOCUMENT = {"flow": "D0901", "version": "001", "name": "N", "groups": [
    {"code": "AAA", "key": "a", "name": "A", "parent": None, "range": "1", "items": [
        {"ref": "J0001", "key": "x", "name": "X", "format": "CHAR(1)", "presence": "mandatory",
         "values": {"A": "a"}}]},
    {"code": "AAA", "key": "a_aaa", "name": "A", "parent": "a", "range": "0-*", "items": []}]}


def test_empty_overlay_changes_nothing() -> None:
    assert apply_overlay(DOCUMENT, {}) == DOCUMENT
    assert compare({"D0901001": DOCUMENT}, {"D0901001": DOCUMENT}) == []


def test_overlay_matches_repeated_codes_by_occurrence() -> None:
    """The second AAA of an overlay is the second AAA of the flow; renamed keys follow into parents."""
    merged = apply_overlay(DOCUMENT, {"groups": [{"code": "AAA", "key": "first"},
                                                 {"code": "AAA", "key": "second", "note": "n"}]})
    assert [(g["key"], g["parent"], g.get("note")) for g in merged["groups"]] == [
        ("first", None, None), ("second", "first", "n")]
