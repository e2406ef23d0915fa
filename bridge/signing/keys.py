"""Key material: the two supported key types, JWK (RFC 7517/7518/8037) import/export, RFC 7638 thumbprints,
PKCS#8 PEM files written with mode 0600, and the permission check the daemon runs at start.

Never logs or returns private material except when writing the PEM file itself.
"""

from __future__ import annotations

import hashlib
import os
import re
import stat
from pathlib import Path
from typing import Any

import orjson
from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from bridge.errors import SignatureError
from bridge.signing.jws import ALG_EDDSA, ALG_ES256, DEFAULT_ALGORITHM, b64url_decode, b64url_encode
from bridge.signing.reasons import INVALID_KEY, KEY_PERMISSIONS

PrivateKey = Ed25519PrivateKey | ec.EllipticCurvePrivateKey
PublicKey = Ed25519PublicKey | ec.EllipticCurvePublicKey

#: The private JWK member that binds a key to a market participant (documented in docs/signing.md).
PARTICIPANT_MEMBER = "mpid"
_MPID = re.compile(r"[A-Z0-9]{4}")
_PRIVATE_JWK_MEMBERS = frozenset({"d", "p", "q", "dp", "dq", "qi", "k", "oth"})


def validate_participant(mpid: object) -> str:
    """An MPID is four upper-case letters or digits; anything else is a configuration mistake."""
    if not isinstance(mpid, str) or not _MPID.fullmatch(mpid):
        raise SignatureError(INVALID_KEY, f"participant must be a 4-character MPID (A-Z, 0-9), got {mpid!r}")
    return mpid


def algorithm_for(key: PrivateKey | PublicKey) -> str:
    """The only JWS alg each key type may be used with (one key, one algorithm: RFC 7518 §3 advice)."""
    if isinstance(key, (Ed25519PrivateKey, Ed25519PublicKey)):
        return ALG_EDDSA
    if isinstance(key, (ec.EllipticCurvePrivateKey, ec.EllipticCurvePublicKey)) and isinstance(
        key.curve, ec.SECP256R1
    ):
        return ALG_ES256
    raise SignatureError(INVALID_KEY, f"unsupported key type {type(key).__name__}: use Ed25519 or EC P-256")


def generate_private_key(alg: str = DEFAULT_ALGORITHM) -> PrivateKey:
    """A fresh key for `alg` (ES256, the default -> P-256; EdDSA -> Ed25519)."""
    if alg == ALG_EDDSA:
        return Ed25519PrivateKey.generate()
    if alg == ALG_ES256:
        return ec.generate_private_key(ec.SECP256R1())
    raise SignatureError(INVALID_KEY, f"unsupported algorithm {alg!r}: use EdDSA or ES256")


def public_jwk_members(key: PublicKey) -> dict[str, str]:
    """The RFC 7638 required members of the public JWK, which are also all the key material."""
    if isinstance(key, Ed25519PublicKey):
        raw = key.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
        return {"crv": "Ed25519", "kty": "OKP", "x": b64url_encode(raw).decode()}
    if isinstance(key, ec.EllipticCurvePublicKey) and isinstance(key.curve, ec.SECP256R1):
        numbers = key.public_numbers()
        return {
            "crv": "P-256",
            "kty": "EC",
            "x": b64url_encode(numbers.x.to_bytes(32, "big")).decode(),
            "y": b64url_encode(numbers.y.to_bytes(32, "big")).decode(),
        }
    raise SignatureError(INVALID_KEY, f"unsupported key type {type(key).__name__}: use Ed25519 or EC P-256")


def thumbprint(key: PublicKey) -> str:
    """RFC 7638 JWK thumbprint (SHA-256, base64url): the `kid` of every key here."""
    members = public_jwk_members(key)  # already the required members, in lexicographic order
    canonical = orjson.dumps(members, option=orjson.OPT_SORT_KEYS)
    return b64url_encode(hashlib.sha256(canonical).digest()).decode()


def public_jwk(
    key: PublicKey, participant: str | None = None, x5c: list[str] | None = None
) -> dict[str, Any]:
    """The public JWK as published in a JWKS: key members, kid, alg, use, optional `mpid` and `x5c`."""
    jwk: dict[str, Any] = dict(public_jwk_members(key))
    jwk["kid"] = thumbprint(key)
    jwk["alg"] = algorithm_for(key)
    jwk["use"] = "sig"
    if participant is not None:
        jwk[PARTICIPANT_MEMBER] = validate_participant(participant)
    if x5c:
        jwk["x5c"] = list(x5c)
    return jwk


def public_key_from_jwk(jwk: dict[str, Any]) -> PublicKey:
    """Import a public JWK; refuses private members so a trust file can never hold a secret by accident."""
    if not isinstance(jwk, dict):
        raise SignatureError(INVALID_KEY, "JWK is not a JSON object")
    private = sorted(_PRIVATE_JWK_MEMBERS.intersection(jwk))
    if private:
        raise SignatureError(
            INVALID_KEY, f"JWK holds private key members ({', '.join(private)}); publish public keys only"
        )
    kty, crv = jwk.get("kty"), jwk.get("crv")
    try:
        if kty == "OKP" and crv == "Ed25519":
            x = _coordinate(jwk, "x")
            return Ed25519PublicKey.from_public_bytes(x)
        if kty == "EC" and crv == "P-256":
            x, y = _coordinate(jwk, "x"), _coordinate(jwk, "y")
            if len(x) != 32 or len(y) != 32:
                raise SignatureError(INVALID_KEY, "P-256 JWK coordinates must be 32 bytes")
            numbers = ec.EllipticCurvePublicNumbers(
                int.from_bytes(x, "big"), int.from_bytes(y, "big"), ec.SECP256R1()
            )
            return numbers.public_key()
    except ValueError as exc:
        raise SignatureError(INVALID_KEY, f"JWK is not a valid public key: {exc}") from None
    raise SignatureError(INVALID_KEY, f"unsupported JWK kty/crv {kty!r}/{crv!r}: use OKP/Ed25519 or EC/P-256")


# Edwards25519 (RFC 8032 §5.1): -x^2 + y^2 = 1 + d x^2 y^2 over GF(p).
_P = 2**255 - 19
_D = -121665 * pow(121666, _P - 2, _P) % _P
_SQRT_M1 = pow(2, (_P - 1) // 4, _P)


def is_small_order(key: PublicKey) -> bool:
    """True for an Ed25519 key that is one of the 8 points of order dividing 8, in any encoding (canonical, y >= p,
    or x = 0 with the sign bit set). For such a key A, [h]A takes at most 8 values, so a trivial signature (R a
    small-order point, S = 0) verifies arbitrary messages: a trust store must never hold one."""
    if not isinstance(key, Ed25519PublicKey):
        return False  # P-256 has cofactor 1: cryptography refuses points off the curve
    encoded = int.from_bytes(key.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw), "little")
    y = (encoded & ((1 << 255) - 1)) % _P  # a non-canonical y (>= p) decodes as y - p, as verifiers do
    x2 = (y * y - 1) * pow(_D * y * y + 1, _P - 2, _P) % _P
    x = pow(x2, (_P + 3) // 8, _P)
    if x * x % _P != x2:
        x = x * _SQRT_M1 % _P
    if x * x % _P != x2:
        return False  # not on the curve: no signature verifies under it
    point = (x, y)  # the sign of x does not change whether [8]P is the neutral element
    for _ in range(3):
        point = _edwards_double(point)
    return point == (0, 1)


def _edwards_double(point: tuple[int, int]) -> tuple[int, int]:
    """[2]P with the complete twisted Edwards addition law (a = -1; d is not a square, so no exceptions)."""
    x, y = point
    t = _D * x * x * y * y % _P
    return ((2 * x * y) * pow(1 + t, _P - 2, _P) % _P, (y * y + x * x) * pow(1 - t, _P - 2, _P) % _P)


def _coordinate(jwk: dict[str, Any], name: str) -> bytes:
    value = jwk.get(name)
    if not isinstance(value, str):
        raise SignatureError(INVALID_KEY, f"JWK member {name!r} is missing")
    try:
        return b64url_decode(value, f"JWK member {name!r}")
    except SignatureError:
        raise SignatureError(INVALID_KEY, f"JWK member {name!r} is not base64url") from None


def load_private_key_pem(data: bytes, password: bytes | None = None) -> PrivateKey:
    """Parse a PEM private key and insist on a supported type."""
    try:
        key = serialization.load_pem_private_key(data, password=password)
    except (ValueError, TypeError, UnsupportedAlgorithm):
        raise SignatureError(
            INVALID_KEY, "not a readable PEM private key (PKCS#8, unencrypted unless a password is given)"
        ) from None
    if not isinstance(key, (Ed25519PrivateKey, ec.EllipticCurvePrivateKey)):
        raise SignatureError(
            INVALID_KEY, f"unsupported key type {type(key).__name__}: use Ed25519 or EC P-256"
        )
    algorithm_for(key)
    return key


def private_key_pem(key: PrivateKey) -> bytes:
    """Unencrypted PKCS#8 PEM; protection comes from the file mode (0600) and the host."""
    return key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )


def write_private_key(path: str | os.PathLike[str], key: PrivateKey) -> None:
    """Create `path` with mode 0600 from the start (never chmod afterwards) and refuse to overwrite."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_NOFOLLOW", 0), 0o600)
    with os.fdopen(fd, "wb") as handle:
        handle.write(private_key_pem(key))


def check_private_key_permissions(path: str | os.PathLike[str]) -> None:
    """Refuse a private key file that group or others may read or write (like ssh does): the daemon calls this."""
    try:
        info = os.stat(path)
    except OSError as exc:
        raise SignatureError(INVALID_KEY, f"{path}: cannot read private key: {exc.strerror}") from None
    if not stat.S_ISREG(info.st_mode):
        raise SignatureError(INVALID_KEY, f"{path}: private key is not a regular file")
    loose = stat.S_IMODE(info.st_mode) & 0o077
    if loose:
        raise SignatureError(
            KEY_PERMISSIONS,
            f"{path}: private key is accessible by group or others (mode {stat.S_IMODE(info.st_mode):04o});"
            " run chmod 600",
        )


def read_private_key(path: str | os.PathLike[str], *, check_permissions: bool = True) -> PrivateKey:
    """Load a private key file, by default refusing one whose mode is too open."""
    if check_permissions:
        check_private_key_permissions(path)
    try:
        data = Path(path).read_bytes()
    except OSError as exc:
        raise SignatureError(INVALID_KEY, f"{path}: cannot read private key: {exc.strerror}") from None
    return load_private_key_pem(data)
