"""RFC 8785 JSON Canonicalization Scheme (JCS) for the values CloudEvents here carry.

Fast path: ``orjson.dumps(obj, OPT_SORT_KEYS | OPT_STRICT_INTEGER)``. For the value types we accept it is
byte-identical to RFC 8785, because

* strings: orjson escapes exactly ``"``, ``\\``, and U+0000..U+001F (as ``\\b \\t \\n \\f \\r`` or lowercase
  ``\\u00xx``) and writes everything else as UTF-8, which is ECMAScript ``JSON.stringify`` (RFC 8785 §3.2.2.2);
  lone surrogates are refused by orjson. tests/signing/test_jcs.py checks this for every Unicode scalar value.
* integers: with OPT_STRICT_INTEGER only |n| <= 2**53-1 pass; those are printed in plain decimal, which is what
  ECMAScript ``Number.prototype.toString`` gives for them (§3.2.2.3). Floats are refused (not exact here).
* ``true``/``false``/``null`` and compact separators are the same.
* key order: orjson sorts by UTF-8 bytes (= code points); RFC 8785 sorts by UTF-16 code units. The two orders
  agree unless keys hold non-ASCII characters, so when the output is not pure ASCII and some key is non-ASCII
  we re-serialize with the straightforward slow path below.

Anything else (float, big int, bytes, UUID, datetime, enum, subclasses, non-string keys, cycles) raises
``SignatureError("unsupported_value")`` so an event is never signed in a form a verifier cannot reproduce.
"""

from __future__ import annotations

from typing import Any

import orjson

from bridge.errors import SignatureError
from bridge.signing.reasons import UNSUPPORTED_VALUE

_OPTIONS = (
    orjson.OPT_SORT_KEYS
    | orjson.OPT_STRICT_INTEGER
    | orjson.OPT_PASSTHROUGH_SUBCLASS
    | orjson.OPT_PASSTHROUGH_DATETIME
    | orjson.OPT_PASSTHROUGH_DATACLASS
)
_LEAF_TYPES = frozenset({str, int, bool, type(None)})
_CONTAINER_TYPES = frozenset({dict, list, tuple})
_ALLOWED_TYPES = _LEAF_TYPES | _CONTAINER_TYPES


def canonicalize(obj: Any, *, known_types: bool = False) -> bytes:
    """Return the RFC 8785 canonical UTF-8 bytes of `obj`, or raise SignatureError('unsupported_value').

    `known_types`: the caller built `obj` from str, int, bool, None, dict and list only (the bridge's own events),
    so the type walk is skipped. Were that wrong, the result would be an event no verifier accepts (verifiers
    walk the types), never one that verifies with a different meaning.
    """
    try:
        # First: orjson refuses non-str keys, ints beyond 2**53-1, surrogates, unknown types and depth > 255,
        # which also guarantees the type walk below terminates (no cycles).
        out = orjson.dumps(obj, option=_OPTIONS)
    except orjson.JSONEncodeError as exc:
        raise SignatureError(UNSUPPORTED_VALUE, f"value cannot be canonicalized (RFC 8785): {exc}") from None
    if not known_types:
        _check_types(obj)
    if not out.isascii() and _has_non_ascii_key(obj):
        out = _slow_canonicalize(obj).encode("utf-8")
    return out


def _check_types(root: Any) -> None:
    """Refuse values orjson would write but JCS would not write the same way (floats, UUID, enum, Fragment...)."""
    root_type = type(root)
    if root_type in _LEAF_TYPES:
        return
    if root_type not in _CONTAINER_TYPES:
        raise _unsupported(root)
    stack: list[Any] = [root]
    pop, push = stack.pop, stack.append
    while stack:
        node = pop()
        values = node.values() if type(node) is dict else node
        types = set(map(type, values))
        if types <= _LEAF_TYPES:
            continue
        if not types <= _ALLOWED_TYPES:
            for value in values:
                if type(value) not in _ALLOWED_TYPES:
                    raise _unsupported(value)
        for value in values:
            if type(value) in _CONTAINER_TYPES:
                push(value)


def _unsupported(value: Any) -> SignatureError:
    kind = type(value).__name__
    return SignatureError(
        UNSUPPORTED_VALUE, f"value of type {kind} cannot be canonicalized exactly (RFC 8785)"
    )


def _has_non_ascii_key(root: Any) -> bool:
    """True when some object key is non-ASCII, the only case where orjson's key order may differ from JCS."""
    stack: list[Any] = [root]
    while stack:
        node = stack.pop()
        if type(node) is dict:
            for key, value in node.items():
                if not key.isascii():
                    return True
                if type(value) in _CONTAINER_TYPES:
                    stack.append(value)
        elif type(node) in _CONTAINER_TYPES:
            stack.extend(v for v in node if type(v) in _CONTAINER_TYPES)
    return False


def _utf16_key(key: str) -> bytes:
    return key.encode("utf-16-be")


def _slow_canonicalize(value: Any) -> str:
    """Plain recursive JCS for the rare non-ASCII-key case; types were already checked by the fast path."""
    kind = type(value)
    if kind is dict:
        members = sorted(value.items(), key=lambda item: _utf16_key(item[0]))
        inner = ",".join(orjson.dumps(k).decode() + ":" + _slow_canonicalize(v) for k, v in members)
        return "{" + inner + "}"
    if kind is list or kind is tuple:
        return "[" + ",".join(_slow_canonicalize(v) for v in value) + "]"
    return orjson.dumps(value, option=_OPTIONS).decode()
