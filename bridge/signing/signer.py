"""Signing: turn an event into the same event plus a `signature` attribute (detached JWS over its JCS form).

Hot path. Everything that does not depend on the event (header, key dispatch) is computed once in __init__,
so the per-event cost is: one orjson call, one type walk, one base64, one signature, two small concatenations
(`sign_to_json`, for events the bridge built itself: no type walk and no second serialization).
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.asymmetric.utils import decode_dss_signature

from bridge.errors import SignatureError
from bridge.signing.certs import sha256_thumbprint, x5c_values
from bridge.signing.jcs import canonicalize
from bridge.signing.jws import DEFAULT_ALGORITHM, b64url_encode, encode_protected_header
from bridge.signing.keys import (
    PrivateKey,
    algorithm_for,
    generate_private_key,
    public_jwk,
    read_private_key,
    thumbprint,
    validate_participant,
)
from bridge.signing.reasons import INVALID_KEY, UNSUPPORTED_VALUE, WRONG_PARTICIPANT

SIGNATURE_ATTRIBUTE = "signature"
_SIGNATURE_MEMBER = b'"' + SIGNATURE_ATTRIBUTE.encode() + b'":"'
_ES256 = ec.ECDSA(hashes.SHA256())


class Signer:
    """Signs CloudEvents with one private key; `kid` is the RFC 7638 thumbprint of its public key."""

    def __init__(
        self,
        private_key: PrivateKey,
        *,
        participant: str | None = None,
        certificate_chain: Sequence[x509.Certificate] | None = None,
        embed_x5c: bool = False,
    ) -> None:
        self._key = private_key
        self.alg: str = algorithm_for(private_key)
        public_key = private_key.public_key()
        self.kid: str = thumbprint(public_key)
        self.participant: str | None = validate_participant(participant) if participant is not None else None
        self._expected_source = f"urn:mpid:{participant}" if participant is not None else None
        self._chain = list(certificate_chain or [])
        header: dict[str, Any] = {"alg": self.alg, "kid": self.kid}
        if self._chain:
            if self._chain[0].public_key() != public_key:
                raise SignatureError(INVALID_KEY, "certificate is not for this private key")
            header["x5t#S256"] = sha256_thumbprint(self._chain[0])
            if embed_x5c:
                header["x5c"] = x5c_values(self._chain)
        elif embed_x5c:
            raise SignatureError(INVALID_KEY, "embed_x5c needs a certificate chain")
        self.protected_header: dict[str, Any] = header
        header_b64 = encode_protected_header(header)
        self._prefix = header_b64 + b"."
        self._header_text = header_b64.decode("ascii") + ".."
        self._sign_raw: Callable[[bytes], bytes] = (
            private_key.sign if isinstance(private_key, Ed25519PrivateKey) else self._sign_es256
        )

    @classmethod
    def from_key_file(
        cls,
        path: str | os.PathLike[str],
        *,
        participant: str | None = None,
        certificate_chain: Sequence[x509.Certificate] | None = None,
        embed_x5c: bool = False,
        check_permissions: bool = True,
    ) -> Signer:
        """Load a PKCS#8 PEM key; by default refuses a file readable by group/others (see keys.check_...)."""
        key = read_private_key(path, check_permissions=check_permissions)
        return cls(key, participant=participant, certificate_chain=certificate_chain, embed_x5c=embed_x5c)

    @classmethod
    def generate(cls, alg: str = DEFAULT_ALGORITHM, participant: str | None = None) -> Signer:
        """A signer with a fresh key (ES256 unless `alg` says EdDSA): for tests, `dtn-bridge keys generate` and the
        development key."""
        return cls(generate_private_key(alg), participant=participant)

    @property
    def private_key(self) -> PrivateKey:
        """The key object (for writing it out once); never printed or logged by dtn-bridge."""
        return self._key

    def public_jwk(self) -> dict[str, Any]:
        """The public JWK to put in the receivers' JWKS (with `mpid` when the signer has a participant)."""
        x5c = x5c_values(self._chain) if self._chain else None
        return public_jwk(self._key.public_key(), participant=self.participant, x5c=x5c)

    def public_jwks(self) -> dict[str, Any]:
        """A one-key JWKS document."""
        return {"keys": [self.public_jwk()]}

    def sign(self, event: dict[str, Any]) -> dict[str, Any]:
        """Return a new dict: `event` (less any old signature) plus `signature`; `event` is not modified."""
        body = self._body(event)
        payload = canonicalize(body)  # before the signature is added: the payload excludes it
        body[SIGNATURE_ATTRIBUTE] = self.sign_canonical(payload)
        return body

    def sign_to_json(self, event: dict[str, Any], *, known_types: bool = False) -> bytes:
        """The signed event as JSON bytes, ready to publish: its canonical form with `signature` appended as the last
        member, so the event is serialized once (receivers parse JSON; member order carries no meaning).
        `known_types` as in `canonicalize`."""
        return self.signed_json(canonicalize(self._body(event), known_types=known_types))

    def signed_json(self, canonical: bytes) -> bytes:
        """`sign_to_json` for an event already in its canonical form (without a signature): the bytes to publish."""
        members = canonical[1:-1]
        signature = self.sign_canonical(canonical).encode("ascii")
        return b"".join((b"{", members, b"," if members else b"", _SIGNATURE_MEMBER, signature, b'"}'))

    def _body(self, event: dict[str, Any]) -> dict[str, Any]:
        """`event` without any old signature, after checking it may be signed by this signer."""
        if type(event) is not dict:
            raise SignatureError(UNSUPPORTED_VALUE, "an event must be a JSON object (dict)")
        if SIGNATURE_ATTRIBUTE in event:
            body = {k: v for k, v in event.items() if k != SIGNATURE_ATTRIBUTE}
        else:
            body = event.copy()
        if self._expected_source is not None and body.get("source") != self._expected_source:
            raise SignatureError(
                WRONG_PARTICIPANT, f"event source {body.get('source')!r} is not {self._expected_source!r}"
            )
        return body

    def sign_canonical(self, payload: bytes) -> str:
        """The detached JWS for already-canonical bytes (for callers that canonicalize once for other uses)."""
        signature = self._sign_raw(self._prefix + b64url_encode(payload))
        return self._header_text + b64url_encode(signature).decode("ascii")

    def _sign_es256(self, data: bytes) -> bytes:
        r, s = decode_dss_signature(self._key.sign(data, _ES256))  # type: ignore[call-arg]
        return r.to_bytes(32, "big") + s.to_bytes(32, "big")
