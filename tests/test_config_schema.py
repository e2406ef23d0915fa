"""Tests of bridge.schema: the one validator of YAML mappings (configuration and rules)."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from bridge.errors import ConfigError
from bridge.schema import Node, describe_value, did_you_mean


class TestNode:
    def test_dotted_keys(self) -> None:
        """Keys are named from the root: a section, a nested one, a list index."""
        root = Node("", {"broker": {"tls": {}}}, "f.yaml")
        assert root.dotted("broker") == "broker"
        tls = root.section("broker").section("tls")
        assert tls.dotted("ca_file") == "broker.tls.ca_file" and tls.dotted("[0]") == "broker.tls[0]"

    def test_unknown_key_did_you_mean_names_the_file(self) -> None:
        with pytest.raises(ConfigError) as info:
            Node("rules.limits", {"max_event_byte": 1}, "f.yaml").check_keys({"max_event_bytes", "max_file_bytes"})
        assert info.value.key == "rules.limits.max_event_byte" and info.value.source == "f.yaml"
        assert "did you mean 'max_event_bytes'?" in info.value.message

    def test_not_a_mapping(self) -> None:
        with pytest.raises(ConfigError) as info:
            Node("", [1], None)
        assert info.value.key == "(root)" and "a list" in info.value.message

    def test_required_string(self) -> None:
        with pytest.raises(ConfigError, match="subscribers.name: is required"):
            Node("subscribers", {}, None).string("name")

    def test_paths_resolve_against_base_dir(self, tmp_path: Path) -> None:
        node = Node("state", {"dir": "a/../b"}, None, tmp_path)
        assert node.path("dir", None) == tmp_path / "b"

    @given(st.integers(min_value=0, max_value=0o777))
    def test_mode_round_trip(self, mode: int) -> None:
        """A mode written as an octal string reads back as the same number."""
        assert Node("spool", {"m": f"0{mode:o}"}, None).mode("m", 0) == mode

    @pytest.mark.parametrize("value", [True, 1.5, "x", None])
    def test_integer_refuses_other_types(self, value: object) -> None:
        expected = f"broker.heartbeat: expected an integer, got {describe_value(value)}"
        with pytest.raises(ConfigError, match=re.escape(expected)):
            Node("broker", {"heartbeat": value}, None).integer("heartbeat", 30)


def test_did_you_mean() -> None:
    assert did_you_mean("heartbeet", {"heartbeat", "urls"}) == "; did you mean 'heartbeat'?"
    assert did_you_mean("zzz", {"b", "a"}) == "; known keys: a, b"
    assert did_you_mean("zzz", {"b", "a"}, list_known=False) == ""
