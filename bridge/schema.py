"""Declarative settings and the one validator of YAML mappings, shared by the configuration and the rules.

A setting is declared once, on its frozen dataclass field (`setting(default, "what it is", minimum=1)`): its type
(from the annotation), default, bounds and one-line description. From those declarations come the parser
(`read_settings`), the did-you-mean errors naming the dotted key, the generated reference (docs/configuration.md)
and the JSON Schema for editors (docs/config.schema.json). Kept in-house rather than pydantic/msgspec: the
settings are ~60 plain values, the messages (`broker.confirm_window: must be at least 1, got 0`) and path resolution
against the config file's folder are ours, and it keeps the core free of another dependency.

Pure: knows nothing of files, threads or brokers (`bridge.rules` uses it without loading `bridge.config`).
"""

from __future__ import annotations

import dataclasses
import math
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass
from difflib import get_close_matches
from pathlib import Path
from typing import Any

from bridge.errors import ConfigError

__all__ = ["Node", "Setting", "describe_value", "did_you_mean", "json_schema_of", "read_settings", "setting",
           "settings_of", "type_text"]

# annotation (as written, postponed) -> kind of value
_KINDS = {
    "str": "string", "str | None": "optional_string", "bool": "boolean", "int": "integer", "int | None": "integer",
    "float": "number", "Path": "path", "Path | None": "path", "tuple[str, ...]": "strings",
    "tuple[Path, ...]": "paths",
}
_MISSING: Any = dataclasses.MISSING


@dataclass(frozen=True, slots=True)
class Setting:
    """What a key is: `kind` (string, choice, integer, number, boolean, mode, path, paths, strings, optional_string,
    custom), its bounds and its description. `yaml_default` is the default as written in YAML where the field has
    none (paths relative to the config file's folder)."""

    doc: str
    kind: str = ""
    minimum: float | None = None
    maximum: float | None = None
    positive: bool = False  # a number strictly above 0
    pattern: re.Pattern[str] | None = None
    hint: str = ""  # what `pattern` means, for the error
    choices: tuple[str, ...] = ()
    fold_case: bool = False
    nullable: bool = False
    yaml_default: object = None
    deprecated: str = ""  # the key that replaces it


def setting(default: Any = _MISSING, doc: str = "", *, repr: bool = True, **options: Any) -> Any:
    """A dataclass field carrying its `Setting` (the field's own default stays the one default)."""
    return dataclasses.field(default=default, repr=repr, metadata={"setting": Setting(doc, **options)})


def settings_of(cls: type) -> list[tuple[str, Setting, object]]:
    """(key, setting, default as YAML would write it) for each declared field of a settings dataclass, in order."""
    found: list[tuple[str, Setting, object]] = []
    for f in dataclasses.fields(cls):
        spec = f.metadata.get("setting")
        if not isinstance(spec, Setting):
            continue
        kind = spec.kind or ("choice" if spec.choices else _KINDS.get(str(f.type), ""))
        if not kind:
            raise TypeError(f"{cls.__name__}.{f.name}: no kind for {f.type}")
        spec = dataclasses.replace(spec, kind=kind, nullable=spec.nullable or "None" in str(f.type))
        default = spec.yaml_default if f.default is _MISSING else _yaml_value(f.default)
        found.append((f.name, spec, default))
    return found


def _yaml_value(value: object) -> object:
    if isinstance(value, tuple):
        return [_yaml_value(item) for item in value]
    if isinstance(value, Path):
        return str(value)
    return value


def read_settings(node: Node, cls: type) -> dict[str, Any]:
    """Each declared setting of `cls` read from `node` (its default when absent); `custom` ones are the caller's."""
    return {key: node.setting(key, spec, default) for key, spec, default in settings_of(cls) if spec.kind != "custom"}


def did_you_mean(name: str, known: list[str] | set[str] | Mapping[str, object], *, list_known: bool = True) -> str:
    """'; did you mean 'x'?' for the closest known name, else (with `list_known`) the known keys."""
    close = get_close_matches(name, list(known), n=1)
    if close:
        return f"; did you mean {close[0]!r}?"
    return f"; known keys: {', '.join(sorted(known))}" if list_known else ""


def describe_value(value: object) -> str:
    """How a YAML value reads to a person, in the error messages of the configuration and the rules."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return f"a boolean ({str(value).lower()})"
    if isinstance(value, (int, float)):
        return f"a number ({value})"
    if isinstance(value, str):
        return f"a string ({value!r})"
    if isinstance(value, Mapping):
        return "a mapping"
    if isinstance(value, (list, tuple)):
        return "a list"
    return type(value).__name__


class Node:
    """One mapping of YAML with its dotted key (`broker`, `rules.limits`; "" for the root): typed getters raising
    `ConfigError` on the key. Relative paths resolve against `base_dir`."""

    __slots__ = ("base_dir", "data", "key", "source")

    def __init__(self, key: str, data: object, source: str | None, base_dir: Path | None = None) -> None:
        self.key = key
        self.source = source
        self.base_dir = base_dir
        if data is None:
            data = {}
        if not isinstance(data, Mapping):
            raise ConfigError(key or "(root)", f"expected a mapping, got {describe_value(data)}", source)
        for name in data:
            if not isinstance(name, str):
                raise ConfigError(self.dotted(str(name)), "keys must be strings", source)
        self.data: Mapping[str, Any] = data

    def dotted(self, name: str) -> str:
        """The full key of `name` in this mapping."""
        if not self.key:
            return name
        return f"{self.key}{name}" if name.startswith("[") else f"{self.key}.{name}"

    def error(self, name: str, message: str) -> ConfigError:
        """A ConfigError for `name` of this mapping."""
        return ConfigError(self.dotted(name), message, self.source)

    def check_keys(self, known: set[str] | Mapping[str, object]) -> None:
        """Unknown keys are errors, with a did-you-mean (a misspelt key would otherwise fall back to its default)."""
        for name in self.data:
            if name not in known:
                raise self.error(name, f"unknown key{did_you_mean(name, known)}")

    def has(self, name: str) -> bool:
        return self.data.get(name) is not None

    def raw(self, name: str, default: object = None) -> object:
        return self.data.get(name, default)

    def mapping_keys(self) -> list[str]:
        return list(self.data)

    def section(self, name: str) -> Node:
        """The mapping under `name` (absent or null: empty)."""
        return Node(self.dotted(name), self.data.get(name), self.source, self.base_dir)

    def setting(self, name: str, spec: Setting, default: object) -> Any:
        """The value of a declared setting."""
        value = self.data.get(name, default)
        if value is None and spec.nullable:
            return None
        kind = spec.kind
        if kind == "string":
            return self.string(name, default, pattern=spec.pattern, hint=spec.hint)  # type: ignore[arg-type]
        if kind == "optional_string":
            return self.optional_string(name, pattern=spec.pattern, hint=spec.hint)
        if kind == "choice":
            return self.choice(name, default, spec.choices, fold_case=spec.fold_case)  # type: ignore[arg-type]
        if kind == "boolean":
            return self.boolean(name, default)  # type: ignore[arg-type]
        if kind == "integer":
            return self.integer(name, default, minimum=spec.minimum, maximum=spec.maximum)  # type: ignore[arg-type]
        if kind == "number":
            return self.number(name, default, minimum=spec.minimum, positive=spec.positive)  # type: ignore[arg-type]
        if kind == "mode":
            return self.mode(name, default)  # type: ignore[arg-type]
        if kind == "path":
            return self.path(name, default)  # type: ignore[arg-type]
        if kind == "paths":
            return self.path_list(name)
        if kind == "strings":
            return tuple(self.string_list(name, default))  # type: ignore[arg-type]
        raise TypeError(f"{self.dotted(name)}: unknown kind {kind!r}")

    def sequence(self, name: str) -> list[Any]:
        """A list (absent or null: empty)."""
        value = self.data.get(name)
        if value is None:
            return []
        if not isinstance(value, list):
            raise self.error(name, f"expected a list, got {describe_value(value)}")
        return value

    def strings(self, name: str, *, pattern: re.Pattern[str] | None = None, hint: str = "") -> list[str]:
        """A list of strings (absent or null: empty), each matching `pattern`."""
        values = self.sequence(name)
        for index, value in enumerate(values):
            if not isinstance(value, str):
                raise self.error(f"{name}[{index}]", f"expected a string, got {describe_value(value)}")
            if pattern is not None and not pattern.fullmatch(value):
                raise self.error(f"{name}[{index}]", f"{value!r} is not {hint}")
        return values

    def string_list(self, name: str, default: list[str] | tuple[str, ...]) -> list[str]:
        """A list of strings with a default when absent."""
        value = self.data.get(name, default)
        if not isinstance(value, (list, tuple)):
            raise self.error(name, f"expected a list of strings, got {describe_value(value)}")
        for index, item in enumerate(value):
            if not isinstance(item, str):
                raise self.error(f"{name}[{index}]", f"expected a string, got {describe_value(item)}")
        return list(value)

    def string(self, name: str, default: str | None = None, *, pattern: re.Pattern[str] | None = None,
               hint: str = "") -> str:
        """A string; required when there is no default."""
        value = self.data.get(name, default)
        if value is None and default is None:
            raise self.error(name, "is required")
        if not isinstance(value, str):
            raise self.error(name, f"expected a string, got {describe_value(value)}")
        if pattern is not None and not pattern.fullmatch(value):
            raise self.error(name, f"{value!r} is not {hint}" if hint else f"{value!r} is not valid")
        return value

    def optional_string(self, name: str, *, pattern: re.Pattern[str] | None = None, hint: str = "") -> str | None:
        value = self.data.get(name)
        if value is None:
            return None
        if not isinstance(value, str):
            raise self.error(name, f"expected a string or null, got {describe_value(value)}")
        return self.string(name, pattern=pattern, hint=hint)

    def choice(self, name: str, default: str, choices: tuple[str, ...], *, fold_case: bool = False) -> str:
        value = self.string(name, default)
        folded = value.lower() if fold_case else value
        if folded not in choices:
            raise self.error(name, f"{value!r} is not one of: {', '.join(choices)}")
        return folded

    def boolean(self, name: str, default: bool) -> bool:
        value = self.data.get(name, default)
        if not isinstance(value, bool):
            raise self.error(name, f"expected true or false, got {describe_value(value)}")
        return value

    def integer(self, name: str, default: int, *, minimum: float | None = None, maximum: float | None = None) -> int:
        value = self.data.get(name, default)
        if isinstance(value, bool) or not isinstance(value, int):
            raise self.error(name, f"expected an integer, got {describe_value(value)}")
        self._check_range(name, value, minimum, maximum)
        return value

    def optional_integer(self, name: str, *, minimum: int | None = None) -> int | None:
        """An integer or null (absent: null)."""
        value = self.data.get(name)
        if value is None:
            return None
        if isinstance(value, bool) or not isinstance(value, int):
            raise self.error(name, f"expected an integer or null, got {describe_value(value)}")
        self._check_range(name, value, minimum, None)
        return value

    def number(self, name: str, default: float, *, minimum: float | None = None, positive: bool = False) -> float:
        value = self.data.get(name, default)
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise self.error(name, f"expected a number, got {describe_value(value)}")
        if not math.isfinite(value):
            raise self.error(name, "must be a finite number")
        if positive and value <= 0:
            raise self.error(name, f"must be greater than 0, got {value}")
        self._check_range(name, value, minimum, None)
        return float(value)

    def mode(self, name: str, default: int) -> int:
        """A permission mode: an int from YAML `0640`, or a string `"0640"` / `"0o640"` / `"640"` (octal)."""
        value = self.data.get(name, default)
        if isinstance(value, str):
            text = value.strip().lower().removeprefix("0o")
            if not re.fullmatch(r"[0-7]{1,4}", text):
                raise self.error(name, f"{value!r} is not an octal permission mode like '0640'")
            value = int(text, 8)
        elif isinstance(value, bool) or not isinstance(value, int):
            raise self.error(name, f"expected an octal permission mode like '0640', got {describe_value(value)}")
        if not 0 <= value <= 0o777:
            raise self.error(name, f"{value} is out of range for a permission mode; write it as octal, e.g. '0640'")
        return value

    def path(self, name: str, default: str | None) -> Path | None:
        """A path resolved against `base_dir`; None when null and the default is null."""
        value = self.data.get(name, default)
        if value is None and default is None:
            return None
        if not isinstance(value, str) or not value.strip():
            raise self.error(name, f"expected a path (a non-empty string), got {describe_value(value)}")
        return self._resolve(value)

    def path_list(self, name: str) -> tuple[Path, ...]:
        """A list of paths (absent or null: empty); each resolves like `path`."""
        value = self.data.get(name)
        if value is None:
            return ()
        if not isinstance(value, (list, tuple)):
            raise self.error(name, f"expected a list of paths, got {describe_value(value)}")
        for index, item in enumerate(value):
            if not isinstance(item, str) or not item.strip():
                raise self.error(f"{name}[{index}]",
                                 f"expected a path (a non-empty string), got {describe_value(item)}")
        return tuple(self._resolve(item) for item in value)

    def _resolve(self, value: str) -> Path:
        path = Path(value).expanduser()
        if not path.is_absolute() and self.base_dir is not None:
            path = self.base_dir / path
        return Path(os.path.normpath(path))

    def _check_range(self, name: str, value: float, minimum: float | None, maximum: float | None) -> None:
        if minimum is not None and value < minimum:
            raise self.error(name, f"must be at least {_number(minimum)}, got {value}")
        if maximum is not None and value > maximum:
            raise self.error(name, f"must be at most {_number(maximum)}, got {value}")


def _number(value: float) -> str:
    return str(int(value)) if float(value).is_integer() else str(value)


# -------------------------------------------------------------------------------------------- reference and schema


def type_text(spec: Setting) -> str:
    """The type and bounds of a setting, as the reference shows them."""
    kind = spec.kind
    text = {
        "string": f"string: {spec.hint}" if spec.hint else "string", "optional_string": "string", "boolean": "boolean",
        "integer": "integer", "number": "number", "mode": "octal mode", "path": "path", "paths": "list of paths",
        "strings": "list of strings", "choice": " \\| ".join(f"`{c}`" for c in spec.choices),
    }.get(kind, kind)
    bounds = []
    if spec.positive:
        bounds.append("> 0")
    if spec.minimum is not None:
        bounds.append(f">= {_number(spec.minimum)}")
    if spec.maximum is not None:
        bounds.append(f"<= {_number(spec.maximum)}")
    if bounds:
        text += f" ({', '.join(bounds)})"
    if spec.nullable:
        text += " or null"
    return text


def json_schema_of(spec: Setting, default: object) -> dict[str, Any]:
    """The JSON Schema of one setting (draft 2020-12)."""
    kind = spec.kind
    out: dict[str, Any]
    if kind in ("string", "optional_string"):
        out = {"type": "string"}
        if spec.pattern is not None:
            out["pattern"] = f"^(?:{spec.pattern.pattern})$"
    elif kind == "choice":
        out = {"enum": list(spec.choices)}
        if spec.fold_case:
            out = {"type": "string", "pattern": "^(" + "|".join(_any_case(c) for c in spec.choices) + ")$"}
    elif kind == "boolean":
        out = {"type": "boolean"}
    elif kind in ("integer", "number"):
        out = {"type": kind}
        if spec.positive:
            out["exclusiveMinimum"] = 0
        if spec.minimum is not None:
            out["minimum"] = spec.minimum
        if spec.maximum is not None:
            out["maximum"] = spec.maximum
    elif kind == "mode":
        out = {"anyOf": [{"type": "integer", "minimum": 0, "maximum": 0o777},
                         {"type": "string", "pattern": "^\\s*(0[oO])?[0-7]{1,4}\\s*$"}]}
    elif kind == "path":
        out = {"type": "string", "minLength": 1}
    elif kind in ("paths", "strings"):
        out = {"type": "array", "items": {"type": "string", "minLength": 1} if kind == "paths" else {"type": "string"}}
    else:
        raise TypeError(f"no JSON Schema for kind {kind!r}")
    if spec.nullable:
        out = {"anyOf": [out, {"type": "null"}]}
    out = {"description": spec.doc, **out}
    if default is not None or spec.nullable:
        out["default"] = f"0{default:o}" if kind == "mode" and isinstance(default, int) else default
    if spec.deprecated:
        out["deprecated"] = True
    return out


def _any_case(word: str) -> str:
    return "".join(f"[{c.lower()}{c.upper()}]" if c.isalpha() else re.escape(c) for c in word)
