"""X.509-bound keys: chains validated to a CA bundle, dates, participant naming, x5c in JWK or header."""

from __future__ import annotations

import datetime as dt
from pathlib import Path
from typing import Any

import orjson
import pytest
from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import ec
from signing_helpers import NON_REPUDIATION_ONLY, NOW, Pki, make_ca, make_event, pem

from bridge.errors import ConfigError, SignatureError
from bridge.signing import Signer, TrustedKey, TrustStore
from bridge.signing.certs import sha256_thumbprint, x5c_values
from bridge.signing.jcs import canonicalize
from bridge.signing.jws import b64url_encode, encode_protected_header, signing_input


def reason_of(store: TrustStore, event: dict[str, Any]) -> str:
    with pytest.raises(SignatureError) as info:
        store.verify(event)
    return info.value.reason


def bound_signer(
    pki: Pki, alg: str = "EdDSA", embed: bool = False, **cert_args: Any
) -> tuple[Signer, x509.Certificate]:
    base = Signer.generate(alg)
    cert = pki.issue(base.private_key.public_key(), **cert_args)
    return Signer(base.private_key, certificate_chain=[cert], embed_x5c=embed), cert


def signed_with_header(signer: Signer, header: dict[str, Any]) -> dict[str, Any]:
    """make_event() really signed by `signer`'s key under a protected header of the test's choosing."""
    event = make_event()
    header_b64 = encode_protected_header(header)
    signature = signer.private_key.sign(signing_input(header_b64, canonicalize(event)))  # type: ignore[call-arg]
    return dict(event, signature=f"{header_b64.decode()}..{b64url_encode(signature).decode()}")


class TestCertificateInJwks:
    """A JWKS entry carrying x5c is checked against the CA bundle at verification time."""

    @pytest.mark.parametrize("alg", ["EdDSA", "ES256"])
    def test_valid_chain(self, pki: Pki, alg: str) -> None:
        """A leaf issued by the CA with CN=UDMS verifies an event from urn:mpid:UDMS."""
        signer, cert = bound_signer(pki, alg)
        store = TrustStore.from_jwks(signer.public_jwks(), ca_certificates=[pki.ca_cert])
        result = store.verify(signer.sign(make_event()))
        assert result.participant == "UDMS"
        assert result.certificate_thumbprint == sha256_thumbprint(cert)

    def test_header_carries_x5t(self, pki: Pki) -> None:
        """A certificate-bound signer adds x5t#S256 to the protected header."""
        signer, cert = bound_signer(pki)
        assert signer.protected_header == {
            "alg": "EdDSA",
            "kid": signer.kid,
            "x5t#S256": sha256_thumbprint(cert),
        }

    def test_expired(self, pki: Pki) -> None:
        """A leaf past notAfter: certificate_expired."""
        signer, _ = bound_signer(
            pki, not_before=NOW - dt.timedelta(days=10), not_after=NOW - dt.timedelta(days=1)
        )
        store = TrustStore.from_jwks(signer.public_jwks(), ca_certificates=[pki.ca_cert])
        assert reason_of(store, signer.sign(make_event())) == "certificate_expired"

    def test_not_yet_valid(self, pki: Pki) -> None:
        """A leaf before notBefore: certificate_expired (out of date either way)."""
        signer, _ = bound_signer(
            pki, not_before=NOW + dt.timedelta(days=1), not_after=NOW + dt.timedelta(days=10)
        )
        store = TrustStore.from_jwks(signer.public_jwks(), ca_certificates=[pki.ca_cert])
        assert reason_of(store, signer.sign(make_event())) == "certificate_expired"

    def test_expires_after_cached_validation(self, pki: Pki) -> None:
        """A chain validated once is re-checked for dates on every event (the cache never outlives notAfter)."""
        signer, cert = bound_signer(pki)
        now = [NOW]
        store = TrustStore.from_jwks(
            signer.public_jwks(), ca_certificates=[pki.ca_cert], clock=lambda: now[0]
        )
        event = signer.sign(make_event())
        store.verify(event)
        now[0] = cert.not_valid_after_utc + dt.timedelta(seconds=1)
        assert reason_of(store, event) == "certificate_expired"

    def test_wrong_participant(self, pki: Pki) -> None:
        """A certificate for OTHR used on an event from UDMS: certificate_wrong_participant."""
        signer, _ = bound_signer(pki, cn="OTHR")
        store = TrustStore.from_jwks(signer.public_jwks(), ca_certificates=[pki.ca_cert])
        assert reason_of(store, signer.sign(make_event())) == "certificate_wrong_participant"

    def test_participant_named_in_san_uri(self, pki: Pki) -> None:
        """SAN URI urn:mpid:UDMS names the participant even when the CN is something else."""
        signer, _ = bound_signer(pki, cn="Utility Data Services Ltd", san_uris=("urn:mpid:UDMS",))
        store = TrustStore.from_jwks(signer.public_jwks(), ca_certificates=[pki.ca_cert])
        assert store.verify(signer.sign(make_event())).participant == "UDMS"

    def test_untrusted_ca(self, pki: Pki) -> None:
        """A leaf from another CA: certificate_invalid."""
        other_key, other_ca = make_ca("Rogue CA")
        from signing_helpers import issue_leaf

        base = Signer.generate()
        cert = issue_leaf(other_key, other_ca, base.private_key.public_key())
        signer = Signer(base.private_key, certificate_chain=[cert])
        store = TrustStore.from_jwks(signer.public_jwks(), ca_certificates=[pki.ca_cert])
        assert reason_of(store, signer.sign(make_event())) == "certificate_invalid"

    def test_x5t_mismatch(self, pki: Pki) -> None:
        """A header x5t#S256 that is not the JWK's certificate: certificate_invalid."""
        signer, _ = bound_signer(pki)
        store = TrustStore.from_jwks(signer.public_jwks(), ca_certificates=[pki.ca_cert])
        signed = signer.sign(make_event())
        header = b64url_encode(b'{"alg":"EdDSA","kid":"%s","x5t#S256":"AAAA"}' % signer.kid.encode()).decode()
        signed["signature"] = header + ".." + signed["signature"].split(".")[2]
        assert reason_of(store, signed) == "certificate_invalid"

    @pytest.mark.parametrize("usage", [NON_REPUDIATION_ONLY, None], ids=["non-repudiation-only", "no-key-usage"])
    def test_leaf_without_digital_signature(self, pki: Pki, usage: x509.KeyUsage | None) -> None:
        """Issue 14: a certificate whose key usage lacks digitalSignature certifies no event signature. A JWKS
        entry carrying one is refused at load (naming the entry), and such a chain never verifies."""
        signer, cert = bound_signer(pki, key_usage=usage)
        with pytest.raises(ConfigError, match=r"keys\[0\].*digitalSignature"):
            TrustStore.from_jwks(signer.public_jwks(), ca_certificates=[pki.ca_cert])
        bare = dict(signer.public_jwk())
        del bare["x5c"]
        store = TrustStore([TrustedKey(signer.kid, "EdDSA", signer.private_key.public_key(), chain=(cert,))],
                           ca_certificates=[pki.ca_cert])
        assert reason_of(store, signer.sign(make_event())) == "certificate_invalid"
        assert TrustStore.from_jwks({"keys": [bare]}).verify(signer.sign(make_event())).kid == signer.kid

    def test_without_ca_bundle_the_jwks_is_the_trust(self, pki: Pki) -> None:
        """With no CA bundle the JWKS itself is trusted; the certificate is informational."""
        signer, _ = bound_signer(pki, cn="OTHR")
        assert TrustStore.from_jwks(signer.public_jwks()).verify(signer.sign(make_event())).kid == signer.kid

    def test_certificate_for_other_key_refused_in_jwks(self, pki: Pki) -> None:
        """A JWK whose x5c certificate holds another key is a configuration error."""
        signer, _ = bound_signer(pki)
        other_cert = pki.issue(ec.generate_private_key(ec.SECP256R1()).public_key())
        jwk = dict(signer.public_jwk(), x5c=x5c_values([other_cert]))
        with pytest.raises(ConfigError):
            TrustStore.from_jwks({"keys": [jwk]})

    def test_signer_refuses_certificate_for_other_key(self, pki: Pki) -> None:
        """Signer refuses a certificate that is not for its key."""
        cert = pki.issue(ec.generate_private_key(ec.SECP256R1()).public_key())
        with pytest.raises(SignatureError):
            Signer(Signer.generate().private_key, certificate_chain=[cert])


class TestCertificateInHeader:
    """A key unknown to the JWKS is trusted when the header's x5c chain validates to the CA."""

    def test_valid_chain_in_header(self, pki: Pki) -> None:
        """Empty JWKS, CA bundle, x5c in the header: verifies, participant from the certificate."""
        signer, _ = bound_signer(pki, "ES256", embed=True)
        store = TrustStore.from_jwks({"keys": []}, ca_certificates=[pki.ca_cert])
        event = signer.sign(make_event())
        assert store.verify(event).participant == "UDMS"
        assert store.verify(event).kid == signer.kid  # second call uses the cache

    def test_chain_with_intermediate(self, pki: Pki) -> None:
        """leaf -> intermediate -> root validates when the header carries leaf and intermediate."""
        from cryptography.hazmat.primitives import hashes
        from signing_helpers import issue_leaf

        inter_key = ec.generate_private_key(ec.SECP256R1())
        inter = (
            x509.CertificateBuilder()
            .subject_name(x509.Name([x509.NameAttribute(x509.oid.NameOID.COMMON_NAME, "Intermediate")]))
            .issuer_name(pki.ca_cert.subject)
            .public_key(inter_key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(NOW - dt.timedelta(days=2))
            .not_valid_after(NOW + dt.timedelta(days=400))
            .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
            .add_extension(
                x509.KeyUsage(False, False, False, False, False, True, True, False, False), critical=True
            )
            .add_extension(x509.SubjectKeyIdentifier.from_public_key(inter_key.public_key()), critical=False)
            .add_extension(
                x509.AuthorityKeyIdentifier.from_issuer_public_key(pki.ca_cert.public_key()), critical=False
            )  # type: ignore[arg-type]
            .sign(pki.ca_key, hashes.SHA256())
        )
        base = Signer.generate()
        leaf = issue_leaf(inter_key, inter, base.private_key.public_key())
        signer = Signer(base.private_key, certificate_chain=[leaf, inter], embed_x5c=True)
        store = TrustStore.from_jwks({"keys": []}, ca_certificates=[pki.ca_cert])
        assert store.verify(signer.sign(make_event())).participant == "UDMS"

    def test_header_chain_wrong_participant(self, pki: Pki) -> None:
        """Header chain naming OTHR on a UDMS event: certificate_wrong_participant."""
        signer, _ = bound_signer(pki, embed=True, cn="OTHR")
        store = TrustStore.from_jwks({"keys": []}, ca_certificates=[pki.ca_cert])
        assert reason_of(store, signer.sign(make_event())) == "certificate_wrong_participant"

    def test_header_chain_expired(self, pki: Pki) -> None:
        """Header chain with an expired leaf: certificate_expired."""
        signer, _ = bound_signer(
            pki, embed=True, not_before=NOW - dt.timedelta(days=9), not_after=NOW - dt.timedelta(days=2)
        )
        store = TrustStore.from_jwks({"keys": []}, ca_certificates=[pki.ca_cert])
        assert reason_of(store, signer.sign(make_event())) == "certificate_expired"

    def test_header_chain_untrusted(self, pki: Pki) -> None:
        """Header chain from an unknown CA: certificate_invalid."""
        other_key, other_ca = make_ca("Rogue CA")
        from signing_helpers import issue_leaf

        base = Signer.generate()
        cert = issue_leaf(other_key, other_ca, base.private_key.public_key())
        signer = Signer(base.private_key, certificate_chain=[cert, other_ca], embed_x5c=True)
        store = TrustStore.from_jwks({"keys": []}, ca_certificates=[pki.ca_cert])
        assert reason_of(store, signer.sign(make_event())) == "certificate_invalid"

    def test_kid_not_matching_header_certificate(self, pki: Pki) -> None:
        """A kid that is not the thumbprint of the x5c leaf key: certificate_invalid."""
        signer, cert = bound_signer(pki, embed=True)
        signed = signer.sign(make_event())
        header = {"alg": "EdDSA", "kid": "someone-else", "x5c": x5c_values([cert])}
        import orjson

        signed["signature"] = (
            b64url_encode(orjson.dumps(header)).decode() + ".." + signed["signature"].split(".")[2]
        )
        store = TrustStore.from_jwks({"keys": []}, ca_certificates=[pki.ca_cert])
        assert reason_of(store, signed) == "certificate_invalid"

    @pytest.mark.parametrize("usage", [NON_REPUDIATION_ONLY, None], ids=["non-repudiation-only", "no-key-usage"])
    def test_header_chain_without_digital_signature(self, pki: Pki, usage: x509.KeyUsage | None) -> None:
        """Issue 14: a header chain whose leaf may not make digital signatures: certificate_invalid."""
        signer, _ = bound_signer(pki, embed=True, key_usage=usage)
        store = TrustStore.from_jwks({"keys": []}, ca_certificates=[pki.ca_cert])
        assert reason_of(store, signer.sign(make_event())) == "certificate_invalid"

    def test_kid_checked_on_a_cached_chain(self, pki: Pki) -> None:
        """Issue 14: once a header chain was validated (and cached), a wrong kid beside the same x5c was accepted;
        the kid is checked on every message."""
        signer, cert = bound_signer(pki, embed=True)
        store = TrustStore.from_jwks({"keys": []}, ca_certificates=[pki.ca_cert])
        assert store.verify(signer.sign(make_event())).kid == signer.kid  # validated and cached
        forged = signed_with_header(signer, {"alg": "EdDSA", "kid": "someone-else", "x5c": x5c_values([cert])})
        assert reason_of(store, forged) == "certificate_invalid"

    def test_header_chain_for_a_small_order_key(self, pki: Pki) -> None:
        """A certificate for the Ed25519 identity point (trivially forged signatures verify under it):
        certificate_invalid, whatever the CA signed."""
        from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

        identity = bytes.fromhex("01" + "00" * 31)
        cert = pki.issue(Ed25519PublicKey.from_public_bytes(identity))
        header = {"alg": "EdDSA", "x5c": x5c_values([cert])}
        forged = dict(make_event(), signature=f"{b64url_encode(orjson.dumps(header)).decode()}.."
                                              f"{b64url_encode(identity + bytes(32)).decode()}")
        store = TrustStore.from_jwks({"keys": []}, ca_certificates=[pki.ca_cert])
        assert reason_of(store, forged) == "certificate_invalid"

    def test_garbage_x5c(self, pki: Pki) -> None:
        """x5c entries that are not certificates: certificate_invalid."""
        import orjson

        signed = Signer.generate().sign(make_event())
        header = {"alg": "EdDSA", "kid": "k", "x5c": ["bm90IGEgY2VydA=="]}
        signed["signature"] = (
            b64url_encode(orjson.dumps(header)).decode() + ".." + signed["signature"].split(".")[2]
        )
        store = TrustStore.from_jwks({"keys": []}, ca_certificates=[pki.ca_cert])
        assert reason_of(store, signed) == "certificate_invalid"

    def test_header_chain_without_ca_is_unknown_key(self, pki: Pki) -> None:
        """Without a CA bundle an x5c in the header cannot establish trust: unknown_key."""
        signer, _ = bound_signer(pki, embed=True)
        assert reason_of(TrustStore.from_jwks({"keys": []}), signer.sign(make_event())) == "unknown_key"


class TestCaBundleFile:
    """from_jwks_file with a PEM CA bundle."""

    def test_bundle_file(self, pki: Pki, tmp_path: Path) -> None:
        """A JWKS file plus a CA bundle file verify a header-chain event."""
        import orjson

        signer, _ = bound_signer(pki, embed=True)
        (tmp_path / "trust.json").write_bytes(orjson.dumps({"keys": []}))
        (tmp_path / "ca.pem").write_bytes(pem(pki.ca_cert))
        store = TrustStore.from_jwks_file(tmp_path / "trust.json", ca_bundle=tmp_path / "ca.pem")
        assert store.verify(signer.sign(make_event())).participant == "UDMS"

    def test_bad_bundle(self, tmp_path: Path) -> None:
        """A CA bundle that holds no certificate is a configuration error."""
        (tmp_path / "trust.json").write_text('{"keys": []}')
        (tmp_path / "ca.pem").write_text("nothing here")
        with pytest.raises(ConfigError):
            TrustStore.from_jwks_file(tmp_path / "trust.json", ca_bundle=tmp_path / "ca.pem")
