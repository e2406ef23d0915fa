"""Names of the DTN files the bridge writes: one plain, visible path part of bounded length, and the
`outbound.name_pattern` that renders them (checked once at load, so that no envelope can name a file elsewhere)."""

from __future__ import annotations

import itertools
import string
from collections.abc import Iterable

from bridge.dtn.formats import CONTROL

#: Placeholders `outbound.name_pattern` may use (the outbound writer supplies them all).
NAME_PATTERN_FIELDS = frozenset(
    {"flow", "version", "from_participant", "from_role", "to_participant", "to_role", "file_identifier"}
)

#: The longest outbound file name (UTF-8 bytes): room below NAME_MAX (255) for a `.N` suffix and the hidden
#: `.<name>.<random>.tmp` it is written under first.
MAX_FILE_NAME_BYTES = 200
# The longest text each placeholder can stand for once the envelope was checked (bridge/events/envelope.py).
_PLACEHOLDER_SIZES = {"flow": 5, "version": 3, "from_participant": 4, "from_role": 1, "to_participant": 4,
                      "to_role": 1, "file_identifier": 10}


def name_pattern_problem(pattern: str) -> str | None:
    """Why `pattern` cannot name outbound files, or None."""
    try:
        parsed = list(string.Formatter().parse(pattern))
    except ValueError as exc:
        return f"{pattern!r} is not a format string: {exc}"
    names = {name for _, name, _, _ in parsed if name is not None}
    unknown = sorted(n for n in names if n not in NAME_PATTERN_FIELDS)
    if unknown:
        return f"unknown placeholder {{{unknown[0]}}}; allowed: {', '.join(sorted(NAME_PATTERN_FIELDS))}"
    if "file_identifier" not in names:
        return "must contain {file_identifier}, or two files would get the same name"
    try:
        samples = [pattern.format(**{n: "X" * size for n, size in _PLACEHOLDER_SIZES.items()}),
                   pattern.format(**{n: "X" for n in NAME_PATTERN_FIELDS})]
    except (ValueError, IndexError, KeyError) as exc:
        return f"{pattern!r} cannot be rendered: {exc}"
    for sample in samples:
        problem = plain_name_problem(sample)
        if problem:
            return f"renders {sample[:60]!r}, which {problem}"
    return None


def plain_name_problem(name: str) -> str | None:
    """Why `name` is not one plain, visible path part of bounded length (an outbound file name), or None."""
    if "/" in name or CONTROL.search(name):
        return "is not one plain file name (it holds '/' or a control character)"
    if name.startswith((".", "~")):
        return "starts with '.' or '~' (a hidden name, which gateways ignore)"
    if len(name.encode()) > MAX_FILE_NAME_BYTES:
        return f"is longer than {MAX_FILE_NAME_BYTES} bytes"
    return None


def candidate_names(name: str) -> Iterable[str]:
    """`name`, then `stem.1.ext`, `stem.2.ext`, ... (the extension stays last for tools that look at it)."""
    yield name
    dot = name.rfind(".")
    stem, ext = (name[:dot], name[dot:]) if dot > 0 else (name, "")
    for n in itertools.count(1):
        yield f"{stem}.{n}{ext}"
