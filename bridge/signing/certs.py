"""X.509 trust: a key presented with a certificate chain (`x5c`) is trusted when the chain validates to the CA
bundle, every certificate is in date, and the leaf names the sending participant (subject CN, or a SAN
``URI:urn:mpid:<MPID>`` or ``DNS:<MPID>``).

Chain building and signature checks are delegated to ``cryptography.x509.verification`` (the WebPKI-style
verifier of cryptography >= 43); we only add the date and participant rules and map failures to reason codes.
"""

from __future__ import annotations

import base64
import binascii
import datetime as dt
import hashlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.serialization import Encoding
from cryptography.x509.oid import NameOID
from cryptography.x509.verification import (
    Criticality,
    ExtensionPolicy,
    PolicyBuilder,
    Store,
    VerificationError,
)

from bridge.errors import SignatureError
from bridge.signing.jws import b64url_encode
from bridge.signing.keys import PublicKey
from bridge.signing.reasons import (
    CERTIFICATE_EXPIRED,
    CERTIFICATE_INVALID,
    CERTIFICATE_WRONG_PARTICIPANT,
    INVALID_KEY,
    MALFORMED,
)

Clock = Callable[[], dt.datetime]


def utc_now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


def load_ca_bundle(data: bytes) -> list[x509.Certificate]:
    """All certificates of a PEM bundle; an empty or unreadable bundle is a configuration error."""
    try:
        certificates = x509.load_pem_x509_certificates(data)
    except ValueError:
        raise SignatureError(INVALID_KEY, "CA bundle is not a PEM certificate bundle") from None
    if not certificates:
        raise SignatureError(INVALID_KEY, "CA bundle holds no certificate")
    return certificates


def parse_x5c(values: Sequence[str], reason: str = MALFORMED) -> list[x509.Certificate]:
    """`x5c` entries are standard (not url-safe) base64 DER, leaf first (RFC 7515 §4.1.6)."""
    chain = []
    for value in values:
        try:
            chain.append(x509.load_der_x509_certificate(base64.b64decode(value, validate=True)))
        except (ValueError, binascii.Error):
            raise SignatureError(reason, "x5c holds something that is not a base64 DER certificate") from None
    return chain


def x5c_values(chain: Sequence[x509.Certificate]) -> list[str]:
    """Encode a chain for a JWS header or a JWK."""
    return [base64.b64encode(cert.public_bytes(Encoding.DER)).decode("ascii") for cert in chain]


def sha256_thumbprint(cert: x509.Certificate) -> str:
    """`x5t#S256`: base64url SHA-256 of the DER certificate."""
    return b64url_encode(hashlib.sha256(cert.public_bytes(Encoding.DER)).digest()).decode()


def certificate_names(cert: x509.Certificate) -> set[str]:
    """Participant names a certificate carries: subject CN, SAN DNS names, SAN URIs `urn:mpid:X` (upper-cased)."""
    names = {
        attr.value.upper()
        for attr in cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)
        if isinstance(attr.value, str)
    }
    try:
        san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except x509.ExtensionNotFound:
        return names
    names.update(name.upper() for name in san.get_values_for_type(x509.DNSName))
    for uri in san.get_values_for_type(x509.UniformResourceIdentifier):
        if uri.lower().startswith("urn:mpid:"):
            names.add(uri[len("urn:mpid:") :].upper())
    return names


def allows_signing(cert: x509.Certificate) -> bool:
    """The certificate's key usage includes digitalSignature (a key certified for, say, key agreement or
    certificate signing only must not sign events); a certificate without the extension does not qualify."""
    try:
        usage = cert.extensions.get_extension_for_class(x509.KeyUsage).value
    except x509.ExtensionNotFound:
        return False
    return usage.digital_signature


@dataclass(frozen=True, slots=True)
class ValidatedChain:
    """A chain that validated to the CA; valid while `not_before <= now <= not_after` (tightest over the chain)."""

    not_before: dt.datetime
    not_after: dt.datetime
    names: frozenset[str]
    thumbprint: str


class CertificateValidator:
    """Validates presented chains against a CA bundle, caching results per chain (re-checking dates each time)."""

    def __init__(
        self, ca_certificates: Sequence[x509.Certificate], clock: Clock = utc_now, cache_size: int = 1024
    ) -> None:
        self._store = Store(list(ca_certificates))
        self._clock = clock
        self._cache: dict[tuple[bytes, ...], ValidatedChain] = {}
        self._cache_size = cache_size

    def validate(
        self, chain: Sequence[x509.Certificate], public_key: PublicKey, participant: str | None
    ) -> None:
        """Raise SignatureError unless the chain is trusted, in date, for `public_key`, naming `participant`."""
        now = self._clock()
        if chain[0].public_key() != public_key:  # on every call: the cache is keyed by the chain alone
            raise SignatureError(CERTIFICATE_INVALID, "certificate is not for the signing key")
        key = tuple(cert.fingerprint(hashes.SHA256()) for cert in chain)
        validated = self._cache.get(key)
        if validated is None:
            validated = self._validate_uncached(chain, now)
            if len(self._cache) >= self._cache_size:
                self._cache.pop(next(iter(self._cache)))
            self._cache[key] = validated
        if not validated.not_before <= now <= validated.not_after:
            raise SignatureError(CERTIFICATE_EXPIRED, "a certificate of the chain is not valid at this time")
        if participant is None or participant.upper() not in validated.names:
            raise SignatureError(
                CERTIFICATE_WRONG_PARTICIPANT,
                f"certificate does not name participant {participant!r} (subject CN or SAN)",
            )

    def _validate_uncached(self, chain: Sequence[x509.Certificate], now: dt.datetime) -> ValidatedChain:
        leaf, intermediates = chain[0], list(chain[1:])
        if not allows_signing(leaf):
            raise SignatureError(CERTIFICATE_INVALID, "certificate does not allow digitalSignature (key usage)")
        for cert in chain:
            if not cert.not_valid_before_utc <= now <= cert.not_valid_after_utc:
                raise SignatureError(
                    CERTIFICATE_EXPIRED, f"certificate {cert.subject.rfc4514_string()} is not in date"
                )
        verifier = (
            PolicyBuilder()
            .store(self._store)
            .time(now)
            .extension_policies(ca_policy=ExtensionPolicy.webpki_defaults_ca(), ee_policy=_ee_policy())
            .build_client_verifier()
        )
        try:
            verified = verifier.verify(leaf, intermediates)
        except VerificationError as exc:
            raise SignatureError(
                CERTIFICATE_INVALID, f"certificate chain does not validate to the CA: {exc}"
            ) from None
        full = verified.chain
        return ValidatedChain(
            not_before=max(c.not_valid_before_utc for c in full),
            not_after=min(c.not_valid_after_utc for c in full),
            names=frozenset(certificate_names(leaf)),
            thumbprint=sha256_thumbprint(leaf),
        )


def _ee_policy() -> ExtensionPolicy:
    """WebPKI leaf rules, except that a SAN is optional (participants may be named by CN only) and any EKU goes:
    these are signing certificates, not TLS ones."""
    return (
        ExtensionPolicy.webpki_defaults_ee()
        .may_be_present(x509.SubjectAlternativeName, Criticality.AGNOSTIC, None)
        .may_be_present(x509.ExtendedKeyUsage, Criticality.AGNOSTIC, None)
    )
