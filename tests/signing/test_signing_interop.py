"""Interoperability, proven both ways: joserfc, jwcrypto and the openssl command line verify our signatures, and we
verify theirs; ES256 signatures are JWS's raw R || S."""

from __future__ import annotations

import shutil
import subprocess
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from joserfc import jws as jose_jws
from joserfc.jwk import ECKey, OKPKey
from jwcrypto import jwk as cjwk
from jwcrypto import jws as cjws
from signing_helpers import make_event

from bridge.errors import SignatureError
from bridge.signing import Signer, TrustStore, canonicalize
from bridge.signing.jws import b64url_decode, b64url_encode, encode_protected_header
from bridge.signing.keys import public_jwk

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


# ------------------------------------------------------------------------------------- ES256 on the wire
# RFC 7518 §3.4: an ES256 JWS signature is R || S, each a 32-byte big-endian integer, not the DER SEQUENCE that
# OpenSSL, .NET's default and Java's SHA256withECDSA produce. The conversions below are written out here, not taken
# from `cryptography`, so that the openssl tests check our encoding against an implementation that shares nothing
# with it: the openssl command line (its own OpenSSL build) reads and writes DER only.

P256_ORDER = 0xFFFFFFFF00000000FFFFFFFFFFFFFFFFBCE6FAADA7179E84F3B9CAC2FC632551


def der_from_raw(raw: bytes) -> bytes:
    """R || S -> DER `SEQUENCE { INTEGER r, INTEGER s }` (short lengths suffice for P-256)."""
    assert len(raw) == 64

    def integer(value: bytes) -> bytes:
        value = value.lstrip(b"\0") or b"\0"
        if value[0] & 0x80:
            value = b"\0" + value  # DER INTEGERs are signed
        return bytes([0x02, len(value)]) + value

    body = integer(raw[:32]) + integer(raw[32:])
    return bytes([0x30, len(body)]) + body


def raw_from_der(der: bytes) -> bytes:
    """DER `SEQUENCE { INTEGER r, INTEGER s }` -> R || S, each left-padded to 32 bytes."""
    assert der[0] == 0x30 and der[1] == len(der) - 2
    out, at = b"", 2
    for _ in range(2):
        assert der[at] == 0x02
        length = der[at + 1]
        value = der[at + 2 : at + 2 + length].lstrip(b"\0")
        assert len(value) <= 32
        out += value.rjust(32, b"\0")
        at += 2 + length
    assert at == len(der)
    return out


def signing_input_of(event: dict[str, Any]) -> bytes:
    """What the JWS signature of `event` covers: header part, '.', base64url of the JCS payload."""
    header = event["signature"].split(".")[0]
    return header.encode() + b"." + b64url_encode(payload_of(event))


class TestEs256WireFormat:
    """The bridge's ES256 signatures are JWS's 64-byte R || S, never DER, whatever the integers' sizes."""

    def test_signature_is_raw_r_and_s(self) -> None:
        """64 bytes, not a DER SEQUENCE; R and S within 1..n-1; it verifies as (R, S) through DER."""
        signer = Signer.generate("ES256")
        signed = signer.sign(make_event())
        raw = b64url_decode(signed["signature"].split(".")[2], "signature")
        assert len(raw) == 64
        r, s = int.from_bytes(raw[:32], "big"), int.from_bytes(raw[32:], "big")
        assert 0 < r < P256_ORDER and 0 < s < P256_ORDER
        public_key = signer.private_key.public_key()
        assert isinstance(public_key, ec.EllipticCurvePublicKey)
        public_key.verify(der_from_raw(raw), signing_input_of(signed), ec.ECDSA(hashes.SHA256()))

    def test_short_integers_are_left_padded(self) -> None:
        """About one signature in 256 has an R below 2**248 (a leading zero byte), and as many an S, which DER writes
        shorter: those are still 64 bytes, padded on the left, and verify with every library."""
        signer = Signer.generate("ES256")
        key = ECKey.import_key(signer.public_jwk())
        store = TrustStore.from_jwks(signer.public_jwks())
        short: dict[str, dict[str, Any]] = {}
        for attempt in range(20_000):
            signed = signer.sign(make_event(event_id=f"pad-{attempt}"))
            raw = b64url_decode(signed["signature"].split(".")[2], "signature")
            assert len(raw) == 64
            for name, first in (("R", raw[0]), ("S", raw[32])):
                if first == 0:
                    short.setdefault(name, signed)
            if len(short) == 2:
                break
        assert sorted(short) == ["R", "S"], f"no short {'R' if 'R' not in short else 'S'} in 20,000 signatures"
        for signed in short.values():
            raw = b64url_decode(signed["signature"].split(".")[2], "signature")
            assert len(der_from_raw(raw)) < 72
            jose_jws.deserialize_compact(signed["signature"], key, algorithms=["ES256"], payload=payload_of(signed))
            token = cjws.JWS()
            token.deserialize(signed["signature"])
            token.verify(cjwk.JWK(**signer.public_jwk()), detached_payload=payload_of(signed))
            assert store.verify(signed).kid == signer.kid

    def test_a_der_signature_is_refused(self) -> None:
        """A sender that puts the DER form in the JWS (a common .NET/Java mistake) gets bad_signature, not a pass."""
        signer = Signer.generate("ES256")
        signed = signer.sign(make_event())
        header, _, signature = signed["signature"].split(".")
        der = der_from_raw(b64url_decode(signature, "signature"))
        forged = dict(signed, signature=f"{header}..{b64url_encode(der).decode()}")
        with pytest.raises(SignatureError) as info:
            TrustStore.from_jwks(signer.public_jwks()).verify(forged)
        assert info.value.reason == "bad_signature"


@pytest.fixture
def openssl(tmp_path: Path) -> Callable[..., subprocess.CompletedProcess[bytes]]:
    """The openssl command line, run in tmp_path."""
    program = shutil.which("openssl")
    if program is None:
        pytest.skip("the openssl command is not installed (Debian: apt-get install openssl)")

    def run(*args: str, check: bool = True) -> subprocess.CompletedProcess[bytes]:
        return subprocess.run([program, *args], cwd=tmp_path, capture_output=True, timeout=60, check=check)

    return run


class TestOpensslInterop:
    """ES256 both ways with the openssl command line, through the DER conversion a receiver without JOSE writes."""

    def test_openssl_verifies_bridge_signatures(self, tmp_path: Path, openssl: Callable[..., Any]) -> None:
        """Our public JWK -> PEM, R || S -> DER: `openssl dgst -verify` says OK, and fails on a changed event."""
        signer = Signer.generate("ES256")
        signed = signer.sign(make_event())
        (tmp_path / "public.pem").write_bytes(signer.private_key.public_key().public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo))
        raw = b64url_decode(signed["signature"].split(".")[2], "signature")
        (tmp_path / "signature.der").write_bytes(der_from_raw(raw))
        (tmp_path / "input").write_bytes(signing_input_of(signed))
        (tmp_path / "tampered").write_bytes(signing_input_of(dict(signed, id="other")))
        verify = ("dgst", "-sha256", "-verify", "public.pem", "-signature", "signature.der")
        assert b"Verified OK" in openssl(*verify, "input").stdout
        refused = openssl(*verify, "tampered", check=False)
        assert refused.returncode != 0 and b"Verification failure" in refused.stdout + refused.stderr

    def test_bridge_verifies_openssl_signatures(self, tmp_path: Path, openssl: Callable[..., Any]) -> None:
        """openssl makes the key and signs the JWS signing input (DER); as R || S the bridge verifies it with the
        key's JWK, and refuses it over a changed event."""
        openssl("genpkey", "-algorithm", "EC", "-pkeyopt", "ec_paramgen_curve:P-256", "-out", "key.pem")
        openssl("pkey", "-in", "key.pem", "-pubout", "-out", "public.pem")
        public_key = serialization.load_pem_public_key((tmp_path / "public.pem").read_bytes())
        assert isinstance(public_key, ec.EllipticCurvePublicKey)
        jwk = public_jwk(public_key, participant="UDMS")
        header = encode_protected_header({"alg": "ES256", "kid": jwk["kid"]})
        event = make_event()
        (tmp_path / "input").write_bytes(header + b"." + b64url_encode(canonicalize(event)))
        openssl("dgst", "-sha256", "-sign", "key.pem", "-out", "signature.der", "input")
        raw = raw_from_der((tmp_path / "signature.der").read_bytes())
        event["signature"] = f"{header.decode()}..{b64url_encode(raw).decode()}"
        store = TrustStore.from_jwks({"keys": [jwk]})
        verified = store.verify(event)
        assert (verified.kid, verified.alg, verified.participant) == (jwk["kid"], "ES256", "UDMS")
        with pytest.raises(SignatureError) as info:
            store.verify(dict(event, time="2016-03-02T15:31:52Z"))
        assert info.value.reason == "bad_signature"
