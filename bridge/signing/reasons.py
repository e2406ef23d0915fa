"""The stable machine reason codes carried by `SignatureError.reason`.

They are part of the interface (logs, dead-letter headers, metrics labels), so they never change meaning.
"""

from __future__ import annotations

# Verification failures, one per cause.
MISSING_SIGNATURE = "missing_signature"
MALFORMED = "malformed"
UNKNOWN_KEY = "unknown_key"
ALGORITHM_NOT_ALLOWED = "algorithm_not_allowed"
BAD_SIGNATURE = "bad_signature"
CERTIFICATE_INVALID = "certificate_invalid"
CERTIFICATE_EXPIRED = "certificate_expired"
CERTIFICATE_WRONG_PARTICIPANT = "certificate_wrong_participant"
WRONG_PARTICIPANT = "wrong_participant"

# The event holds a value that RFC 8785 cannot represent exactly (float, huge int, lone surrogate, ...).
UNSUPPORTED_VALUE = "unsupported_value"

# Key material problems: configuration rather than data, so the CLI exits 2 for them.
INVALID_KEY = "invalid_key"
KEY_PERMISSIONS = "key_permissions"

VERIFICATION_REASONS: tuple[str, ...] = (
    MISSING_SIGNATURE,
    MALFORMED,
    UNKNOWN_KEY,
    ALGORITHM_NOT_ALLOWED,
    BAD_SIGNATURE,
    CERTIFICATE_INVALID,
    CERTIFICATE_EXPIRED,
    CERTIFICATE_WRONG_PARTICIPANT,
    WRONG_PARTICIPANT,
    UNSUPPORTED_VALUE,
)
CONFIG_REASONS: frozenset[str] = frozenset({INVALID_KEY, KEY_PERMISSIONS})
