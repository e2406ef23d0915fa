"""Helpers for the signing tests: a realistic event and a small PKI built with cryptography (uniquely named
module so it cannot clash with other test folders)."""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

NOW = dt.datetime.now(dt.UTC).replace(microsecond=0)


def make_event(
    source: str = "urn:mpid:UDMS", event_id: str = "6f1c2b3a-0d4e-4f5a-9b6c-7d8e9f0a1b2c"
) -> dict[str, Any]:
    """A D0010-like CloudEvent with about 1 KB of data."""
    readings = [
        {
            "mpan_core": f"19000000000{i:02d}",
            "meter_id": f"S95A{i:06d}",
            "register_id": "01",
            "reading_date_time": f"2016-03-0{1 + i % 9}T00:00:00Z",
            "register_reading": 12345 + 17 * i,
            "reading_type": "C",
            "validation_status": "V",
            "site_visit_check_code": None,
            "estimated": i % 2 == 0,
        }
        for i in range(4)
    ]
    return {
        "specversion": "1.0",
        "id": event_id,
        "source": source,
        "type": "uk.dtc.D0010.v002",
        "time": "2016-03-02T15:31:51Z",
        "datacontenttype": "application/json",
        "dtcfileid": "0000475656",
        "dtcfromrole": "D",
        "dtctorole": "X",
        "data": {
            "flow": "D0010",
            "version": "002",
            "note": 'Zürich € 😀 \u2028 "q" \\',
            "readings": readings,
        },
    }


@dataclass
class Pki:
    """A CA, an intermediate and a factory for leaf certificates."""

    ca_key: ec.EllipticCurvePrivateKey
    ca_cert: x509.Certificate
    issue: Callable[..., x509.Certificate]


def _name(cn: str) -> x509.Name:
    return x509.Name(
        [x509.NameAttribute(NameOID.COMMON_NAME, cn), x509.NameAttribute(NameOID.ORGANIZATION_NAME, "Test")]
    )


def make_ca(
    cn: str = "Test DTN CA", not_before: dt.datetime | None = None, not_after: dt.datetime | None = None
) -> tuple[ec.EllipticCurvePrivateKey, x509.Certificate]:
    """A self-signed CA with the extensions a WebPKI-style verifier wants."""
    key = ec.generate_private_key(ec.SECP256R1())
    public = key.public_key()
    cert = (
        x509.CertificateBuilder()
        .subject_name(_name(cn))
        .issuer_name(_name(cn))
        .public_key(public)
        .serial_number(x509.random_serial_number())
        .not_valid_before(not_before or NOW - dt.timedelta(days=30))
        .not_valid_after(not_after or NOW + dt.timedelta(days=3650))
        .add_extension(x509.BasicConstraints(ca=True, path_length=1), critical=True)
        .add_extension(
            x509.KeyUsage(False, False, False, False, False, True, True, False, False), critical=True
        )
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(public), critical=False)
        .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(public), critical=False)
        .sign(key, hashes.SHA256())
    )
    return key, cert


SIGNING = x509.KeyUsage(True, False, False, False, False, False, False, False, False)  # digitalSignature
#: nonRepudiation (contentCommitment) alone: a certificate not for digital signatures.
NON_REPUDIATION_ONLY = x509.KeyUsage(False, True, False, False, False, False, False, False, False)


def issue_leaf(
    ca_key: ec.EllipticCurvePrivateKey,
    ca_cert: x509.Certificate,
    public_key: Any,
    cn: str = "UDMS",
    san_uris: tuple[str, ...] = (),
    not_before: dt.datetime | None = None,
    not_after: dt.datetime | None = None,
    key_usage: x509.KeyUsage | None = SIGNING,
) -> x509.Certificate:
    """A leaf certificate for a participant's signing key (`key_usage` None: no KeyUsage extension)."""
    builder = (
        x509.CertificateBuilder()
        .subject_name(_name(cn))
        .issuer_name(ca_cert.subject)
        .public_key(public_key)
        .serial_number(x509.random_serial_number())
        .not_valid_before(not_before or NOW - dt.timedelta(days=1))
        .not_valid_after(not_after or NOW + dt.timedelta(days=365))
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.CLIENT_AUTH]), critical=False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_cert.public_key()), critical=False
        )  # type: ignore[arg-type]
    )
    if key_usage is not None:
        builder = builder.add_extension(key_usage, critical=True)
    if san_uris:
        builder = builder.add_extension(
            x509.SubjectAlternativeName([x509.UniformResourceIdentifier(u) for u in san_uris]), critical=False
        )
    return builder.sign(ca_key, hashes.SHA256())


def pem(*certs: x509.Certificate) -> bytes:
    return b"".join(c.public_bytes(serialization.Encoding.PEM) for c in certs)
