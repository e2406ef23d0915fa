"""Verification: which public keys are trusted (a JWKS, optionally a CA bundle) and the checks, in order,
that turn a signed event into a `VerifiedSignature` or a `SignatureError` with one stable reason.

Order of checks: signature present and well formed -> algorithm allowed -> key known (JWKS, or an x5c chain
under the CA) -> algorithm matches the key type -> certificate (dates, chain, participant) -> signature ->
participant binding of the JWK. Rotation is just several keys in the JWKS at once.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson
from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
from cryptography.hazmat.primitives.asymmetric.utils import encode_dss_signature

from bridge.errors import ConfigError, SignatureError
from bridge.signing.certs import (
    CertificateValidator,
    Clock,
    allows_signing,
    load_ca_bundle,
    parse_x5c,
    sha256_thumbprint,
    utc_now,
)
from bridge.signing.jcs import canonicalize
from bridge.signing.jws import (
    SUPPORTED_ALGORITHMS,
    ProtectedHeader,
    b64url_decode,
    parse_protected_header,
    signing_input,
    split_detached,
)
from bridge.signing.keys import (
    PARTICIPANT_MEMBER,
    PublicKey,
    algorithm_for,
    is_small_order,
    public_key_from_jwk,
    thumbprint,
    validate_participant,
)
from bridge.signing.reasons import (
    ALGORITHM_NOT_ALLOWED,
    BAD_SIGNATURE,
    CERTIFICATE_INVALID,
    INVALID_KEY,
    MALFORMED,
    MISSING_SIGNATURE,
    UNKNOWN_KEY,
    WRONG_PARTICIPANT,
)
from bridge.signing.signer import SIGNATURE_ATTRIBUTE

_ES256 = ec.ECDSA(hashes.SHA256())
_SOURCE_PREFIX = "urn:mpid:"


@dataclass(frozen=True, slots=True)
class VerifiedSignature:
    """What a valid signature proves: which key (kid, alg) and, when known, which participant signed."""

    kid: str
    alg: str
    participant: str | None
    certificate_thumbprint: str | None = None


@dataclass(frozen=True, slots=True)
class TrustedKey:
    """One public key of the trust store, with its optional participant binding and certificate chain."""

    kid: str
    alg: str
    public_key: PublicKey
    participant: str | None = None
    chain: tuple[x509.Certificate, ...] = field(default=())


def participant_of(event: dict[str, Any]) -> str | None:
    """The sender MPID from `source` = 'urn:mpid:<MPID>', or None when the source has another form."""
    source = event.get("source")
    if isinstance(source, str) and source.startswith(_SOURCE_PREFIX):
        return source[len(_SOURCE_PREFIX) :]
    return None


class TrustStore:
    """The public keys (and optional CA) an event signature may verify against."""

    def __init__(
        self,
        keys: Iterable[TrustedKey] = (),
        *,
        ca_certificates: Sequence[x509.Certificate] | None = None,
        allowed_algorithms: Iterable[str] = SUPPORTED_ALGORITHMS,
        clock: Clock = utc_now,
    ) -> None:
        self._keys: dict[str, TrustedKey] = {}
        for key in keys:
            if key.kid in self._keys:
                raise SignatureError(INVALID_KEY, f"key {key.kid} appears twice in the trust store")
            self._keys[key.kid] = key
        self._allowed = frozenset(allowed_algorithms) & SUPPORTED_ALGORITHMS
        self._validator = CertificateValidator(ca_certificates, clock) if ca_certificates else None
        self._headers: dict[str, ProtectedHeader] = {}
        self._header_keys: dict[tuple[str, ...], TrustedKey] = {}

    # ----------------------------------------------------------------------------------------------- loading

    @classmethod
    def from_jwks(
        cls,
        jwks: dict[str, Any],
        *,
        ca_certificates: Sequence[x509.Certificate] | None = None,
        allowed_algorithms: Iterable[str] = SUPPORTED_ALGORITHMS,
        clock: Clock = utc_now,
        source: str | None = None,
    ) -> TrustStore:
        """Build from a JWKS document ({"keys": [...]}); a bad entry is a ConfigError naming `keys[i]`."""
        if not isinstance(jwks, dict) or not isinstance(jwks.get("keys"), list):
            raise ConfigError("keys", "a JWKS must be a JSON object with a 'keys' array", source)
        keys: list[TrustedKey] = []
        seen: set[str] = set()
        for index, jwk in enumerate(jwks["keys"]):
            try:
                key = trusted_key_from_jwk(jwk)
            except SignatureError as exc:
                raise ConfigError(f"keys[{index}]", str(exc), source) from None
            if key.kid in seen:
                raise ConfigError(f"keys[{index}]", f"duplicate key {key.kid}", source)
            seen.add(key.kid)
            keys.append(key)
        return cls(keys, ca_certificates=ca_certificates, allowed_algorithms=allowed_algorithms, clock=clock)

    @classmethod
    def from_jwks_file(
        cls,
        path: str | os.PathLike[str],
        ca_bundle: str | os.PathLike[str] | None = None,
        *,
        allowed_algorithms: Iterable[str] = SUPPORTED_ALGORITHMS,
        clock: Clock = utc_now,
    ) -> TrustStore:
        """Load a JWKS file and, optionally, a PEM CA bundle that x5c chains must validate to."""
        source = str(path)
        try:
            document = orjson.loads(Path(path).read_bytes())
        except OSError as exc:
            raise ConfigError("jwks", f"cannot read: {exc.strerror}", source) from None
        except orjson.JSONDecodeError as exc:
            raise ConfigError("jwks", f"not JSON: {exc}", source) from None
        ca_certificates = None
        if ca_bundle is not None:
            try:
                ca_certificates = load_ca_bundle(Path(ca_bundle).read_bytes())
            except OSError as exc:
                raise ConfigError("ca_bundle", f"cannot read: {exc.strerror}", str(ca_bundle)) from None
            except SignatureError as exc:
                raise ConfigError("ca_bundle", str(exc), str(ca_bundle)) from None
        return cls.from_jwks(
            document,
            ca_certificates=ca_certificates,
            allowed_algorithms=allowed_algorithms,
            clock=clock,
            source=source,
        )

    @property
    def keys(self) -> tuple[TrustedKey, ...]:
        """The trusted keys, in JWKS order."""
        return tuple(self._keys.values())

    # ------------------------------------------------------------------------------------------ verification

    def verify(self, event: dict[str, Any], *, from_json: bool = False) -> VerifiedSignature:
        """Check `event`'s signature; return who signed it or raise SignatureError with one reason code.

        `from_json`: `event` was just parsed from JSON, so it holds JSON's types only and canonicalization skips its
        type walk. A float is then written as orjson writes it: if that is not what was signed, the signature fails
        and the walk runs after all, to give the precise reason (`unsupported_value`)."""
        if not isinstance(event, dict):
            raise SignatureError(MALFORMED, "an event must be a JSON object")
        value = event.get(SIGNATURE_ATTRIBUTE)
        if value is None:
            raise SignatureError(MISSING_SIGNATURE, "event has no signature attribute")
        header_b64, signature_b64 = split_detached(value)
        header = self._header(header_b64)
        if header.alg not in self._allowed:
            raise SignatureError(ALGORITHM_NOT_ALLOWED, f"algorithm {header.alg!r} is not allowed")
        sender = participant_of(event)
        key = self._key_for(header)
        if key.alg != header.alg:
            raise SignatureError(
                ALGORITHM_NOT_ALLOWED, f"algorithm {header.alg!r} does not match key {key.kid} ({key.alg})"
            )
        cert_thumbprint = None
        if key.chain:
            cert_thumbprint = sha256_thumbprint(key.chain[0])
            if header.x5t_s256 is not None and header.x5t_s256 != cert_thumbprint:
                raise SignatureError(CERTIFICATE_INVALID, "x5t#S256 does not match the key's certificate")
            if self._validator is not None:
                self._validator.validate(key.chain, key.public_key, sender)
        signature = b64url_decode(signature_b64, "JWS signature")
        body = {k: v for k, v in event.items() if k != SIGNATURE_ATTRIBUTE}
        data = signing_input(header_b64.encode("ascii"), canonicalize(body, known_types=from_json))
        try:
            _verify_raw(key, signature, data)
        except SignatureError:
            if from_json:
                canonicalize(body)  # raises unsupported_value when a value JCS cannot write exactly is the cause
            raise
        if key.participant is not None and sender != key.participant:
            raise SignatureError(
                WRONG_PARTICIPANT,
                f"key {key.kid} belongs to {key.participant}, event source is {event.get('source')!r}",
            )
        participant = key.participant
        if participant is None and key.chain and self._validator is not None:
            participant = sender  # the CA-validated certificate named this participant
        return VerifiedSignature(
            kid=key.kid, alg=key.alg, participant=participant, certificate_thumbprint=cert_thumbprint
        )

    def _header(self, header_b64: str) -> ProtectedHeader:
        """Parse the protected header, caching by its text: a signer sends the same header for every event."""
        header = self._headers.get(header_b64)
        if header is None:
            header = parse_protected_header(header_b64)
            if len(self._headers) >= 1024:
                self._headers.clear()
            self._headers[header_b64] = header
        return header

    def _key_for(self, header: ProtectedHeader) -> TrustedKey:
        """The JWKS key named by `kid`, else (with a CA bundle) the key of the chain in the header's x5c."""
        if header.kid is not None:
            key = self._keys.get(header.kid)
            if key is not None:
                return key
        if header.x5c is not None and self._validator is not None:
            return self._header_chain_key(header)
        raise SignatureError(UNKNOWN_KEY, f"no trusted key with kid {header.kid!r}")

    def _header_chain_key(self, header: ProtectedHeader) -> TrustedKey:
        assert header.x5c is not None
        key = self._header_keys.get(header.x5c)
        if key is None:
            chain = parse_x5c(header.x5c, reason=CERTIFICATE_INVALID)
            public_key = chain[0].public_key()
            try:
                alg = algorithm_for(public_key)  # type: ignore[arg-type]
            except SignatureError:
                raise SignatureError(ALGORITHM_NOT_ALLOWED, "certificate key is not Ed25519 or P-256") from None
            if is_small_order(public_key):  # type: ignore[arg-type]
                raise SignatureError(CERTIFICATE_INVALID, "certificate key is a small-order Ed25519 point")
            key = TrustedKey(kid=thumbprint(public_key), alg=alg, public_key=public_key,  # type: ignore[arg-type]
                             chain=tuple(chain))
            if len(self._header_keys) >= 1024:
                self._header_keys.clear()
            self._header_keys[header.x5c] = key
        if header.kid is not None and header.kid != key.kid:  # every message: the cache is keyed by x5c alone
            raise SignatureError(CERTIFICATE_INVALID, "kid is not the thumbprint of the x5c certificate's key")
        return key


def trusted_key_from_jwk(jwk: dict[str, Any]) -> TrustedKey:
    """Check one JWKS entry: public only, supported type, consistent kid/alg/use/key_ops, valid mpid and x5c."""
    public_key = public_key_from_jwk(jwk)
    kid = thumbprint(public_key)
    if is_small_order(public_key):
        raise SignatureError(INVALID_KEY, f"key {jwk.get('kid', kid)!s}: the Ed25519 public key is a small-order "
                             "point, for which a trivial signature verifies any event")
    alg = algorithm_for(public_key)
    if "kid" in jwk and jwk["kid"] != kid:
        raise SignatureError(INVALID_KEY, f"kid {jwk['kid']!r} is not the key's RFC 7638 thumbprint {kid}")
    if "alg" in jwk and jwk["alg"] != alg:
        raise SignatureError(INVALID_KEY, f"alg {jwk['alg']!r} does not fit the key type (expected {alg})")
    if "use" in jwk and jwk["use"] != "sig":
        raise SignatureError(INVALID_KEY, f"use {jwk['use']!r} is not 'sig'")
    key_ops = jwk.get("key_ops")
    if key_ops is not None and (not isinstance(key_ops, list) or "verify" not in key_ops):
        raise SignatureError(INVALID_KEY, "key_ops does not allow 'verify'")
    participant = jwk.get(PARTICIPANT_MEMBER)
    if participant is not None:
        validate_participant(participant)
    chain: tuple[x509.Certificate, ...] = ()
    if "x5c" in jwk:
        x5c = jwk["x5c"]
        if not isinstance(x5c, list) or not x5c or not all(isinstance(c, str) for c in x5c):
            raise SignatureError(INVALID_KEY, "x5c must be a non-empty list of base64 certificates")
        chain = tuple(parse_x5c(x5c, reason=INVALID_KEY))
        if chain[0].public_key() != public_key:
            raise SignatureError(INVALID_KEY, "x5c certificate is not for this key")
        if not allows_signing(chain[0]):
            raise SignatureError(INVALID_KEY, "x5c certificate does not allow digitalSignature (key usage)")
    return TrustedKey(kid=kid, alg=alg, public_key=public_key, participant=participant, chain=chain)


def _verify_raw(key: TrustedKey, signature: bytes, data: bytes) -> None:
    if len(signature) != 64:
        raise SignatureError(BAD_SIGNATURE, "signature has the wrong length for its algorithm")
    try:
        if isinstance(key.public_key, Ed25519PublicKey):
            key.public_key.verify(signature, data)
        else:
            r = int.from_bytes(signature[:32], "big")
            s = int.from_bytes(signature[32:], "big")
            key.public_key.verify(encode_dss_signature(r, s), data, _ES256)
    except InvalidSignature:
        raise SignatureError(BAD_SIGNATURE, "signature does not match the event") from None
