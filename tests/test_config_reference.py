"""Tests of bridge.config_reference: the committed docs/configuration.md and docs/config.schema.json are current,
and what the schema says agrees with what the parser accepts."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import yaml

from bridge.config import DEPRECATED, SECTIONS, load_config
from bridge.config_reference import generated, json_schema, main, markdown
from bridge.schema import settings_of
from tests.conftest import REPO

DOCS = REPO / "docs"
EXAMPLE = REPO / "config" / "bridge.example.yaml"


def example() -> Any:
    return yaml.safe_load(EXAMPLE.read_text(encoding="utf-8"))


def schema_errors(instance: Any) -> list[str]:
    """What is wrong with `instance` by the committed schema: with jsonschema when installed, else a walk over the
    keys and simple types (enough to catch a key the schema does not know)."""
    schema = json.loads((DOCS / "config.schema.json").read_text(encoding="utf-8"))
    try:
        import jsonschema  # type: ignore[import-untyped,unused-ignore]
    except ImportError:
        return _walk(schema, instance, "")
    validator = jsonschema.Draft202012Validator(schema)
    return [f"{'.'.join(map(str, error.absolute_path))}: {error.message}" for error in validator.iter_errors(instance)]


def _walk(schema: dict[str, Any], value: Any, where: str) -> list[str]:
    if "anyOf" in schema:
        return [] if any(not _walk(option, value, where) for option in schema["anyOf"]) else [f"{where}: no match"]
    types = schema.get("type", [])
    types = [types] if isinstance(types, str) else types
    python: dict[str, type | tuple[type, ...]] = {"object": dict, "array": list, "string": str, "boolean": bool,
                                                  "null": type(None), "integer": int, "number": (int, float)}
    if types and not any(isinstance(value, python[t]) and not (t in ("integer", "number") and isinstance(value, bool))
                         for t in types):
        return [f"{where}: not {types}"]
    if "enum" in schema and value not in schema["enum"]:
        return [f"{where}: not one of {schema['enum']}"]
    errors: list[str] = []
    if isinstance(value, dict) and "properties" in schema:
        for key, item in value.items():
            if key not in schema["properties"]:
                errors.append(f"{where}.{key}: unknown")
            else:
                errors += _walk(schema["properties"][key], item, f"{where}.{key}")
    return errors


class TestGeneratedFilesAreCurrent:
    def test_committed_files_match_the_declarations(self) -> None:
        """Regenerate with `python -m bridge.config_reference` after changing a setting."""
        for path, text in generated(DOCS).items():
            assert path.read_text(encoding="utf-8") == text, f"{path} is out of date"

    def test_check_flag(self, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
        """--check fails on a stale or missing file and writes nothing; without it the files are written."""
        assert main(["--check", "--docs", str(tmp_path)]) == 1
        assert list(tmp_path.iterdir()) == [] and "out of date" in capsys.readouterr().err
        assert main(["--docs", str(tmp_path)]) == 0
        assert main(["--check", "--docs", str(tmp_path)]) == 0


class TestReference:
    def test_every_key_is_documented(self) -> None:
        """Each declared key, and each deprecated one, has its row."""
        text = markdown()
        for name, cls in SECTIONS.items():
            for key, _spec, _default in settings_of(cls):
                assert f"| `{name}.{key}` |" in text
        for section, keys in DEPRECATED.items():
            for key in keys:
                assert f"| `{section}.{key}` |" in text

    def test_linked_from_the_readme(self) -> None:
        assert "docs/configuration.md" in (REPO / "README.md").read_text(encoding="utf-8")


class TestJsonSchema:
    def test_example_config_validates(self) -> None:
        """The shipped example (every key shown) is valid by the schema, as it is by the parser."""
        load_config(EXAMPLE)
        assert schema_errors(example()) == []

    def test_an_empty_file_validates(self) -> None:
        assert schema_errors(None) == [] and schema_errors({}) == []

    @pytest.mark.parametrize(
        "bad",
        [
            {"broker": {"heartbeet": 30}},  # unknown key
            {"nope": {}},
            {"inbound": {"workers": "two"}},
            {"log": {"format": "xml"}},
            {"checks": {"mpan_check_digit": "loud"}},
        ],
    )
    def test_schema_refuses_what_the_parser_refuses(self, tmp_path: Path, bad: dict[str, Any]) -> None:
        """A value the parser refuses, the schema refuses too (so an editor marks it before the start does)."""
        path = tmp_path / "bridge.yaml"
        path.write_text(yaml.safe_dump(bad), encoding="utf-8")
        with pytest.raises(Exception, match="bridge.yaml"):
            load_config(path)
        assert schema_errors(bad) != []

    def test_defaults_are_the_parsers(self, tmp_path: Path) -> None:
        """Every default the schema states is the value an empty file loads (modes as octal strings)."""
        path = tmp_path / "bridge.yaml"
        path.write_text("", encoding="utf-8")
        config = load_config(path)
        schema = json_schema()
        for name, cls in SECTIONS.items():
            for key, spec, _default in settings_of(cls):
                if spec.kind in ("custom", "path", "paths"):
                    continue
                stated = schema["properties"][name]["properties"][key]["default"]
                loaded = getattr(getattr(config, name), key)
                if spec.kind == "mode":
                    loaded = f"0{loaded:o}"
                assert stated == (list(loaded) if isinstance(loaded, tuple) else loaded), f"{name}.{key}"

    def test_deprecated_keys_are_marked(self) -> None:
        inbound = json_schema()["properties"]["inbound"]["properties"]
        assert inbound["worker_process"]["deprecated"] is True and "deprecated" not in inbound["workers"]
