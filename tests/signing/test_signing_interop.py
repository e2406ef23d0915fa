"""Interoperability, proven both ways: joserfc and jwcrypto verify our signatures, and we verify theirs."""

from __future__ import annotations

from typing import Any

import pytest
from joserfc import jws as jose_jws
from joserfc.jwk import ECKey, OKPKey
from jwcrypto import jwk as cjwk
from jwcrypto import jws as cjws
from signing_helpers import make_event

from bridge.errors import SignatureError
from bridge.signing import Signer, TrustStore, canonicalize

pytestmark = pytest.mark.filterwarnings("ignore::joserfc.errors.SecurityWarning")
ALGS = ["EdDSA", "ES256"]


def payload_of(event: dict[str, Any]) -> bytes:
    """The detached payload, rebuilt the way a foreign verifier would: JCS of the event minus signature."""
    return canonicalize({k: v for k, v in event.items() if k != "signature"})


class TestJoserfcVerifiesBridge:
    """joserfc.jws.deserialize_compact with a detached payload accepts bridge signatures."""

    @pytest.mark.parametrize("alg", ALGS)
    def test_detached_verify(self, alg: str) -> None:
        """joserfc verifies, and reports our header."""
        signer = Signer.generate(alg)
        signed = signer.sign(make_event())
        key = (OKPKey if alg == "EdDSA" else ECKey).import_key(signer.public_jwk())
        result = jose_jws.deserialize_compact(
            signed["signature"], key, algorithms=[alg], payload=payload_of(signed)
        )
        assert result.protected == {"alg": alg, "kid": signer.kid}
        assert key.thumbprint() == signer.kid

    @pytest.mark.parametrize("alg", ALGS)
    def test_detached_verify_rejects_tampering(self, alg: str) -> None:
        """joserfc also rejects our signature over a changed event (so the check above is real)."""
        signer = Signer.generate(alg)
        signed = signer.sign(make_event())
        key = (OKPKey if alg == "EdDSA" else ECKey).import_key(signer.public_jwk())
        tampered = dict(signed, id="other")
        with pytest.raises(jose_jws.BadSignatureError):
            jose_jws.deserialize_compact(
                signed["signature"], key, algorithms=[alg], payload=payload_of(tampered)
            )


class TestJwcryptoVerifiesBridge:
    """jwcrypto JWS.verify(detached_payload=...) accepts bridge signatures."""

    @pytest.mark.parametrize("alg", ALGS)
    def test_detached_verify(self, alg: str) -> None:
        """jwcrypto verifies with the JWK we publish."""
        signer = Signer.generate(alg, participant="UDMS")
        signed = signer.sign(make_event())
        token = cjws.JWS()
        token.deserialize(signed["signature"])
        token.verify(cjwk.JWK(**signer.public_jwk()), detached_payload=payload_of(signed))
        assert token.jose_header["kid"] == signer.kid

    def test_detached_verify_rejects_tampering(self) -> None:
        """jwcrypto rejects our signature over changed data."""
        signer = Signer.generate()
        signed = signer.sign(make_event())
        token = cjws.JWS()
        token.deserialize(signed["signature"])
        with pytest.raises(cjws.InvalidJWSSignature):
            token.verify(cjwk.JWK(**signer.public_jwk()), detached_payload=payload_of(dict(signed, data={})))

    @pytest.mark.parametrize("alg", ALGS)
    def test_thumbprint_matches(self, alg: str) -> None:
        """jwcrypto's RFC 7638 thumbprint equals our kid."""
        signer = Signer.generate(alg)
        assert cjwk.JWK(**signer.public_jwk()).thumbprint() == signer.kid


class TestBridgeVerifiesForeign:
    """Signatures made by joserfc and jwcrypto over the JCS payload verify in TrustStore."""

    @pytest.mark.parametrize("alg", ALGS)
    def test_joserfc_signature(self, alg: str) -> None:
        """joserfc signs (then detaches); the bridge verifies, and rejects it after tampering."""
        key = OKPKey.generate_key("Ed25519") if alg == "EdDSA" else ECKey.generate_key("P-256")
        event = make_event()
        compact = jose_jws.serialize_compact(
            {"alg": alg, "kid": key.thumbprint()}, canonicalize(event), key, algorithms=[alg]
        )
        event["signature"] = jose_jws.detach_content(compact)
        store = TrustStore.from_jwks({"keys": [key.as_dict(private=False)]})
        assert store.verify(event).kid == key.thumbprint()
        with pytest.raises(SignatureError) as info:
            store.verify(dict(event, time="2016-03-02T15:31:52Z"))
        assert info.value.reason == "bad_signature"

    @pytest.mark.parametrize("alg", ALGS)
    def test_jwcrypto_signature(self, alg: str) -> None:
        """jwcrypto signs with a kid of its own thumbprint; the bridge verifies."""
        key = (
            cjwk.JWK.generate(kty="OKP", crv="Ed25519")
            if alg == "EdDSA"
            else cjwk.JWK.generate(kty="EC", crv="P-256")
        )
        event = make_event()
        token = cjws.JWS(canonicalize(event))
        token.add_signature(key, alg=None, protected={"alg": alg, "kid": key.thumbprint()})
        header, _, signature = token.serialize(compact=True).split(".")
        event["signature"] = f"{header}..{signature}"
        store = TrustStore.from_jwks({"keys": [key.export_public(as_dict=True)]})
        result = store.verify(event)
        assert (result.kid, result.alg) == (key.thumbprint(), alg)

    def test_foreign_header_member_order_is_accepted(self) -> None:
        """A header serialized with other member order or whitespace verifies: we never re-encode the header."""
        key = OKPKey.generate_key("Ed25519")
        event = make_event()
        compact = jose_jws.serialize_compact(
            {"kid": key.thumbprint(), "typ": "JOSE", "alg": "EdDSA"},
            canonicalize(event),
            key,
            algorithms=["EdDSA"],
        )
        event["signature"] = jose_jws.detach_content(compact)
        assert TrustStore.from_jwks({"keys": [key.as_dict(private=False)]}).verify(event).alg == "EdDSA"
