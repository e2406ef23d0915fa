"""Signing and verification of CloudEvents: a detached JWS over the RFC 8785 canonical form, in `signature`.

Public API: `Signer`, `TrustStore`, `VerifiedSignature`, `canonicalize`, `check_private_key_permissions`.
See docs/signing.md for the format and the key management.
"""

from __future__ import annotations

from bridge.signing.jcs import canonicalize
from bridge.signing.keys import PARTICIPANT_MEMBER, check_private_key_permissions
from bridge.signing.signer import SIGNATURE_ATTRIBUTE, Signer
from bridge.signing.trust import TrustedKey, TrustStore, VerifiedSignature

__all__ = [
    "PARTICIPANT_MEMBER",
    "SIGNATURE_ATTRIBUTE",
    "Signer",
    "TrustStore",
    "TrustedKey",
    "VerifiedSignature",
    "canonicalize",
    "check_private_key_permissions",
]
