"""JWS (RFC 7515) compact serialization with a detached payload (Appendix F), the wire format of `signature`.

Only the pieces we need: strict base64url, the protected header and the signing input. The payload is never
transmitted: the verifier recomputes it from the event (JCS of the event without `signature`).
"""

from __future__ import annotations

import binascii
import json
import re
from dataclasses import dataclass
from typing import Any

import orjson
import pybase64

from bridge.errors import SignatureError
from bridge.signing.reasons import MALFORMED

ALG_EDDSA = "EdDSA"
ALG_ES256 = "ES256"
SUPPORTED_ALGORITHMS: frozenset[str] = frozenset({ALG_EDDSA, ALG_ES256})
#: The algorithm of new keys (`keys generate`, the development key). ES256 because every participant's stack can
#: verify it (.NET has no Ed25519 in its runtime; HSMs and cloud key services all do P-256), and here it also signs
#: and verifies faster than Ed25519. EdDSA stays fully supported for signing and verifying (docs/signing.md).
DEFAULT_ALGORITHM = ALG_ES256

_FROM_URLSAFE = bytes.maketrans(b"-_", b"+/")
_B64URL = re.compile(r"[A-Za-z0-9_-]*")
# Header members we understand; anything listed in `crit` must be one of these (we list none as critical).
_UNDERSTOOD_CRIT: frozenset[str] = frozenset()


def b64url_encode(data: bytes) -> bytes:
    """Unpadded base64url (RFC 7515 §2). pybase64 (SIMD) is ten times the standard library's speed on a payload."""
    return pybase64.b64encode(data, altchars=b"-_").rstrip(b"=")


def b64url_decode(text: str, what: str) -> bytes:
    """Strict unpadded base64url: refuses padding, foreign characters and non-canonical trailing bits.

    Lenient decoding would let several strings verify as the same signature (malleability).
    """
    if not _B64URL.fullmatch(text) or len(text) % 4 == 1:
        raise SignatureError(MALFORMED, f"{what} is not unpadded base64url")
    raw = text.encode("ascii")
    try:
        data = binascii.a2b_base64(raw.translate(_FROM_URLSAFE) + b"=" * (-len(raw) % 4), strict_mode=True)
    except binascii.Error:
        raise SignatureError(MALFORMED, f"{what} is not unpadded base64url") from None
    if b64url_encode(data) != raw:
        raise SignatureError(MALFORMED, f"{what} is not canonical base64url")
    return data


def encode_protected_header(header: dict[str, Any]) -> bytes:
    """The base64url protected header; compact sorted JSON so the same key always gives the same header."""
    return b64url_encode(orjson.dumps(header, option=orjson.OPT_SORT_KEYS))


def signing_input(header_b64: bytes, payload: bytes) -> bytes:
    """ASCII(BASE64URL(header)) || '.' || BASE64URL(payload), RFC 7515 §5.1 step 6."""
    return header_b64 + b"." + b64url_encode(payload)


@dataclass(frozen=True, slots=True)
class ProtectedHeader:
    """The parsed protected header: what verification needs from it."""

    alg: str
    kid: str | None
    x5c: tuple[str, ...] | None
    x5t_s256: str | None
    raw: dict[str, Any]


def _no_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    result = dict(pairs)
    if len(result) != len(pairs):
        raise SignatureError(MALFORMED, "JWS header has duplicate member names")
    return result


def parse_protected_header(header_b64: str) -> ProtectedHeader:
    """Decode and check the protected header (RFC 7515 §5.2 steps 2-5)."""
    raw = b64url_decode(header_b64, "JWS protected header")
    try:
        header = json.loads(raw.decode("utf-8"), object_pairs_hook=_no_duplicates)
    except (UnicodeDecodeError, ValueError):
        raise SignatureError(MALFORMED, "JWS protected header is not a JSON object") from None
    if not isinstance(header, dict):
        raise SignatureError(MALFORMED, "JWS protected header is not a JSON object")
    alg = header.get("alg")
    if not isinstance(alg, str):
        raise SignatureError(MALFORMED, "JWS protected header has no 'alg'")
    kid = header.get("kid")
    if kid is not None and not isinstance(kid, str):
        raise SignatureError(MALFORMED, "JWS 'kid' is not a string")
    crit = header.get("crit")
    if crit is not None:
        if not isinstance(crit, list) or not crit or not all(isinstance(c, str) for c in crit):
            raise SignatureError(MALFORMED, "JWS 'crit' is not a non-empty list of names")
        unknown = [c for c in crit if c not in _UNDERSTOOD_CRIT]
        if unknown:
            raise SignatureError(MALFORMED, f"JWS 'crit' lists unsupported extensions: {', '.join(unknown)}")
    if "b64" in header:
        # RFC 7797 unencoded payloads change the signing input; we only produce and accept the standard form.
        raise SignatureError(MALFORMED, "JWS 'b64' header (RFC 7797) is not supported")
    x5c = header.get("x5c")
    if x5c is not None:
        if not isinstance(x5c, list) or not x5c or not all(isinstance(c, str) for c in x5c):
            raise SignatureError(MALFORMED, "JWS 'x5c' is not a non-empty list of certificates")
        x5c = tuple(x5c)
    x5t = header.get("x5t#S256")
    if x5t is not None and not isinstance(x5t, str):
        raise SignatureError(MALFORMED, "JWS 'x5t#S256' is not a string")
    return ProtectedHeader(alg=alg, kid=kid, x5c=x5c, x5t_s256=x5t, raw=header)


def split_detached(value: object) -> tuple[str, str]:
    """Split `<header>..<signature>`; an attached payload or any other shape is malformed."""
    if not isinstance(value, str):
        raise SignatureError(MALFORMED, "signature is not a string")
    parts = value.split(".")
    if len(parts) != 3:
        raise SignatureError(MALFORMED, "signature is not a JWS compact serialization")
    header_b64, payload_b64, signature_b64 = parts
    if payload_b64:
        raise SignatureError(MALFORMED, "signature carries a payload; expected a detached payload")
    if not header_b64 or not signature_b64:
        raise SignatureError(MALFORMED, "signature has an empty header or signature part")
    return header_b64, signature_b64
