"""Signer and TrustStore: round trips, every failure reason, tampering, JWKS loading and rotation."""

from __future__ import annotations

import base64
import copy
from typing import Any

import orjson
import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from hypothesis import given, settings
from hypothesis import strategies as st
from signing_helpers import make_event

from bridge.errors import ConfigError, SignatureError
from bridge.signing import Signer, TrustedKey, TrustStore, VerifiedSignature, canonicalize
from bridge.signing.jws import b64url_decode, b64url_encode
from bridge.signing.keys import is_small_order, thumbprint

ALGS = ["EdDSA", "ES256"]
_SIGNERS = {alg: Signer.generate(alg, participant="UDMS") for alg in ALGS}
# ECDSA signatures are randomized: hypothesis tests sign once so their examples replay identically.
_ES256_SIGNED = _SIGNERS["ES256"].sign(make_event())


def reason_of(store: TrustStore, event: dict[str, Any]) -> str:
    with pytest.raises(SignatureError) as info:
        store.verify(event)
    return info.value.reason


def with_header(
    signed: dict[str, Any], header: dict[str, Any], signature: str | None = None
) -> dict[str, Any]:
    """Replace the protected header (and optionally the signature part) of a signed event."""
    _, _, sig = signed["signature"].split(".")
    forged = dict(signed)
    forged["signature"] = b64url_encode(orjson.dumps(header)).decode() + ".." + (signature or sig)
    return forged


class TestSigner:
    """Signer produces detached compact JWS with the expected header."""

    @pytest.mark.parametrize("alg", ALGS)
    def test_round_trip(self, alg: str, event: dict[str, Any]) -> None:
        """A signed event verifies and reports kid, alg and participant."""
        signer = _SIGNERS[alg]
        result = TrustStore.from_jwks(signer.public_jwks()).verify(signer.sign(event))
        assert result == VerifiedSignature(kid=signer.kid, alg=alg, participant="UDMS")

    @pytest.mark.parametrize("alg", ALGS)
    def test_header_is_alg_and_kid(self, alg: str, event: dict[str, Any]) -> None:
        """The protected header holds exactly alg and kid; the payload part is empty (detached)."""
        signer = _SIGNERS[alg]
        header_b64, payload, sig = signer.sign(event)["signature"].split(".")
        assert payload == ""
        assert orjson.loads(b64url_decode(header_b64, "h")) == {"alg": alg, "kid": signer.kid}
        assert len(b64url_decode(sig, "s")) == 64

    def test_sign_does_not_mutate_and_replaces_old_signature(self, event: dict[str, Any]) -> None:
        """sign() returns a new dict; re-signing replaces the signature instead of signing it."""
        original = copy.deepcopy(event)
        signer = _SIGNERS["EdDSA"]
        once = signer.sign(event)
        assert event == original and "signature" not in event
        twice = signer.sign(once)
        assert twice == once  # Ed25519 is deterministic and the old signature is not part of the payload

    def test_survives_reserialization(self, event: dict[str, Any]) -> None:
        """Pretty-printing, key reordering and re-parsing keep the signature valid."""
        signer = _SIGNERS["ES256"]
        signed = signer.sign(event)
        text = orjson.dumps(dict(reversed(list(signed.items()))), option=orjson.OPT_INDENT_2)
        assert TrustStore.from_jwks(signer.public_jwks()).verify(orjson.loads(text)).kid == signer.kid

    def test_sign_canonical_matches_sign(self, event: dict[str, Any]) -> None:
        """sign_canonical over canonicalize(event) is what sign() puts in the event."""
        signer = _SIGNERS["EdDSA"]
        assert signer.sign_canonical(canonicalize(event)) == signer.sign(event)["signature"]

    @pytest.mark.parametrize("known_types", [False, True])
    def test_sign_to_json_is_the_signed_event(self, event: dict[str, Any], known_types: bool) -> None:
        """sign_to_json's bytes parse to exactly sign()'s event (Ed25519 is deterministic), which verifies."""
        signer = _SIGNERS["EdDSA"]
        body = signer.sign_to_json(event, known_types=known_types)
        assert orjson.loads(body) == signer.sign(event)
        assert body.endswith(b'"signature":"' + signer.sign(event)["signature"].encode() + b'"}')
        assert TrustStore.from_jwks(signer.public_jwks()).verify(orjson.loads(body)).kid == signer.kid

    def test_known_types_are_not_walked_but_verifiers_still_refuse(self, event: dict[str, Any]) -> None:
        """A float passed off as a known type is signed as orjson writes it, and no verifier accepts the event."""
        event["data"]["reading"] = 1.5
        signer = _SIGNERS["EdDSA"]
        with pytest.raises(SignatureError):
            signer.sign_to_json(event)
        signed = orjson.loads(signer.sign_to_json(event, known_types=True))
        assert reason_of(TrustStore.from_jwks(signer.public_jwks()), signed) == "unsupported_value"

    def test_refuses_float(self, event: dict[str, Any]) -> None:
        """An event with a float is not signed."""
        event["data"]["reading"] = 1.5
        with pytest.raises(SignatureError) as info:
            _SIGNERS["EdDSA"].sign(event)
        assert info.value.reason == "unsupported_value"

    def test_refuses_other_participants_event(self) -> None:
        """A signer bound to UDMS refuses an event from another source."""
        with pytest.raises(SignatureError) as info:
            _SIGNERS["EdDSA"].sign(make_event(source="urn:mpid:OTHR"))
        assert info.value.reason == "wrong_participant"

    def test_refuses_non_dict(self) -> None:
        """Only JSON objects are events."""
        with pytest.raises(SignatureError):
            _SIGNERS["EdDSA"].sign([1, 2])  # type: ignore[arg-type]

    def test_invalid_participant(self) -> None:
        """A participant that is not a 4-character MPID is refused."""
        with pytest.raises(SignatureError) as info:
            Signer.generate(participant="udms-x")
        assert info.value.reason == "invalid_key"

    def test_unknown_algorithm(self) -> None:
        """Only EdDSA and ES256 keys can be generated."""
        with pytest.raises(SignatureError):
            Signer.generate("RS256")

    def test_public_jwk_has_no_private_members(self) -> None:
        """public_jwk exposes kid/alg/use/mpid and the public coordinates only."""
        jwk = _SIGNERS["ES256"].public_jwk()
        assert set(jwk) == {"kty", "crv", "x", "y", "kid", "alg", "use", "mpid"}


class TestVerificationFailures:
    """Each failure has its own reason code."""

    def setup_method(self) -> None:
        self.signer = _SIGNERS["EdDSA"]
        self.store = TrustStore.from_jwks(self.signer.public_jwks())
        self.signed = self.signer.sign(make_event())

    def test_missing_signature(self) -> None:
        """No signature attribute: missing_signature."""
        assert reason_of(self.store, make_event()) == "missing_signature"

    @pytest.mark.parametrize(
        "value",
        [
            "",
            "abc",
            "a.b",
            "a..b.c",
            "!!..AAAA",
            "eyJhbGciOiJFZERTQSJ9.cGF5bG9hZA.AAAA",  # attached payload
            "..AAAA",
            "eyJhbGciOiJFZERTQSJ9..",
            "eyJhbGciOiJFZERTQSJ9==..AAAA",  # padding
            "bm90IGpzb24..AAAA",  # header not JSON
            "WzFd..AAAA",  # header is an array
            "e30..AAAA",  # no alg
            123,
            ["x"],
        ],
        ids=repr,
    )
    def test_malformed(self, value: Any) -> None:
        """Anything but `<b64url header>..<b64url signature>` with a JSON-object header: malformed."""
        event = make_event()
        event["signature"] = value
        assert reason_of(self.store, event) == "malformed"

    def test_malformed_duplicate_header_member(self) -> None:
        """A header with a duplicated member name is malformed (ambiguous)."""
        header = b'{"alg":"EdDSA","alg":"EdDSA","kid":"' + self.signer.kid.encode() + b'"}'
        forged = dict(self.signed)
        forged["signature"] = b64url_encode(header).decode() + ".." + self.signed["signature"].split(".")[2]
        assert reason_of(self.store, forged) == "malformed"

    @pytest.mark.parametrize(
        "extra", [{"crit": ["exp"], "exp": 1}, {"b64": False, "crit": ["b64"]}, {"b64": True}]
    )
    def test_malformed_unsupported_extensions(self, extra: dict[str, Any]) -> None:
        """crit extensions we do not implement, and RFC 7797 b64, are refused."""
        header = {"alg": "EdDSA", "kid": self.signer.kid, **extra}
        assert reason_of(self.store, with_header(self.signed, header)) == "malformed"

    def test_non_canonical_signature_encoding(self) -> None:
        """Changing the unused trailing bits of the base64url signature is refused (no malleability)."""
        head, _, sig = self.signed["signature"].split(".")
        alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
        last = alphabet[alphabet.index(sig[-1]) ^ 1]
        forged = dict(self.signed, signature=f"{head}..{sig[:-1]}{last}")
        assert reason_of(self.store, forged) in {"malformed", "bad_signature"}
        assert b64url_decode(sig, "s")  # sanity: original decodes

    def test_unknown_key(self) -> None:
        """A kid not in the JWKS: unknown_key."""
        other = Signer.generate()
        assert reason_of(self.store, other.sign(make_event())) == "unknown_key"

    def test_no_kid_is_unknown_key(self) -> None:
        """A header without kid names no trusted key."""
        assert reason_of(self.store, with_header(self.signed, {"alg": "EdDSA"})) == "unknown_key"

    @pytest.mark.parametrize("alg", ["none", "HS256", "RS256", "ES384", "Ed25519", "", "eddsa"])
    def test_algorithm_not_allowed(self, alg: str) -> None:
        """none, HMAC, RSA and anything else outside EdDSA/ES256: algorithm_not_allowed."""
        forged = with_header(self.signed, {"alg": alg, "kid": self.signer.kid})
        assert reason_of(self.store, forged) == "algorithm_not_allowed"

    def test_alg_none_with_empty_signature(self) -> None:
        """The classic alg=none attack with an empty signature part is never accepted."""
        forged = dict(self.signed)
        forged["signature"] = (
            b64url_encode(b'{"alg":"none","kid":"' + self.signer.kid.encode() + b'"}').decode() + ".."
        )
        assert reason_of(self.store, forged) in {"malformed", "algorithm_not_allowed"}
        forged["signature"] += "AA"
        assert reason_of(self.store, forged) == "algorithm_not_allowed"

    def test_algorithm_of_another_key_type(self) -> None:
        """ES256 claimed for an Ed25519 key: algorithm_not_allowed."""
        forged = with_header(self.signed, {"alg": "ES256", "kid": self.signer.kid})
        assert reason_of(self.store, forged) == "algorithm_not_allowed"

    def test_algorithm_restricted_by_store(self) -> None:
        """A store allowing ES256 only refuses EdDSA signatures."""
        store = TrustStore.from_jwks(self.signer.public_jwks(), allowed_algorithms=["ES256"])
        assert reason_of(store, self.signed) == "algorithm_not_allowed"

    def test_bad_signature(self) -> None:
        """A signature by the right kid over other bytes: bad_signature."""
        other = self.signer.sign(make_event(event_id="another"))
        forged = dict(self.signed, signature=other["signature"])
        assert reason_of(self.store, forged) == "bad_signature"

    def test_wrong_length_signature(self) -> None:
        """A signature of the wrong size for the algorithm: bad_signature."""
        head = self.signed["signature"].split(".")[0]
        forged = dict(self.signed, signature=f"{head}..{b64url_encode(bytes(63)).decode()}")
        assert reason_of(self.store, forged) == "bad_signature"

    def test_wrong_participant(self) -> None:
        """A key bound to UDMS signing an event whose source is another MPID: wrong_participant."""
        unbound = Signer(self.signer.private_key)  # same key, no sign-time check
        event = unbound.sign(make_event(source="urn:mpid:OTHR"))
        assert reason_of(self.store, event) == "wrong_participant"

    def test_wrong_participant_non_mpid_source(self) -> None:
        """A bound key and a source that is not urn:mpid:...: wrong_participant."""
        event = Signer(self.signer.private_key).sign(make_event(source="https://example.org"))
        assert reason_of(self.store, event) == "wrong_participant"

    def test_unbound_key_accepts_any_source(self) -> None:
        """Without an mpid member the JWKS does not bind the key, so any source verifies."""
        signer = Signer.generate()
        store = TrustStore.from_jwks(signer.public_jwks())
        assert store.verify(signer.sign(make_event(source="urn:mpid:ABCD"))).participant is None

    def test_float_in_received_event(self) -> None:
        """A received event holding a float cannot be canonicalized: unsupported_value."""
        event = dict(self.signed, data={"x": 1.5})
        assert reason_of(self.store, event) == "unsupported_value"

    def test_parsed_from_json_skips_the_type_walk_but_keeps_the_reasons(self) -> None:
        """`from_json` (the outbound checks): a parsed event verifies, and a float still says unsupported_value."""
        parsed = orjson.loads(orjson.dumps(self.signed))
        assert self.store.verify(parsed, from_json=True).kid == self.signer.kid
        with pytest.raises(SignatureError) as info:
            self.store.verify(dict(parsed, data={"x": 1.5}), from_json=True)
        assert info.value.reason == "unsupported_value"
        with pytest.raises(SignatureError) as info:
            self.store.verify(dict(parsed, data={"x": 2}), from_json=True)
        assert info.value.reason == "bad_signature"

    def test_not_a_dict(self) -> None:
        """A non-object event is malformed."""
        assert reason_of(self.store, ["x"]) == "malformed"  # type: ignore[arg-type]


class TestTampering:
    """Changing any attribute or any byte of data invalidates the signature."""

    @pytest.mark.parametrize("alg", ALGS)
    def test_every_attribute_changed(self, alg: str) -> None:
        """Exhaustive over attributes: each changed value fails with bad_signature (or a more specific reason)."""
        signer = _SIGNERS[alg]
        store = TrustStore.from_jwks(signer.public_jwks())
        signed = signer.sign(make_event())
        for name in signed:
            if name == "signature":
                continue
            tampered = copy.deepcopy(signed)
            value = tampered[name]
            tampered[name] = value + "x" if isinstance(value, str) else {"tampered": True}
            expected = {"bad_signature", "wrong_participant"} if name == "source" else {"bad_signature"}
            assert reason_of(store, tampered) in expected, name

    @pytest.mark.parametrize("alg", ALGS)
    def test_attribute_added_or_removed(self, alg: str) -> None:
        """Adding an attribute or removing any one fails."""
        signer = _SIGNERS[alg]
        store = TrustStore.from_jwks(signer.public_jwks())
        signed = signer.sign(make_event())
        assert reason_of(store, dict(signed, extra="1")) == "bad_signature"
        for name in signed:
            if name != "signature":
                smaller = {k: v for k, v in signed.items() if k != name}
                assert reason_of(store, smaller) in {"bad_signature", "wrong_participant"}, name

    @settings(max_examples=150, deadline=None)
    @given(st.data())
    def test_any_single_byte_of_data(self, data: st.DataObject) -> None:
        """Hypothesis: flipping one byte of the serialized data (that still parses) fails verification."""
        signer = _SIGNERS["EdDSA"]
        store = TrustStore.from_jwks(signer.public_jwks())
        signed = signer.sign(make_event())
        raw = bytearray(orjson.dumps(signed["data"]))
        index = data.draw(st.integers(0, len(raw) - 1))
        replacement = data.draw(st.integers(0x20, 0x7E).filter(lambda b: b != raw[index]))
        raw[index] = replacement
        try:
            new_data = orjson.loads(bytes(raw))
        except orjson.JSONDecodeError:
            return  # not an event any more
        tampered = dict(signed, data=new_data)
        try:
            unchanged = canonicalize(new_data) == canonicalize(signed["data"])
        except SignatureError:
            unchanged = False  # e.g. a digit became a float: verification must refuse it too
        if unchanged:
            return  # e.g. whitespace-only change: the same event, rightly still valid
        with pytest.raises(SignatureError) as info:
            store.verify(tampered)
        assert info.value.reason in {"bad_signature", "unsupported_value"}

    @settings(max_examples=100, deadline=None)
    @given(st.data())
    def test_any_single_character_of_signature(self, data: st.DataObject) -> None:
        """Hypothesis: changing one character of the signature attribute never verifies."""
        signer = _SIGNERS["ES256"]
        store = TrustStore.from_jwks(signer.public_jwks())
        signed = _ES256_SIGNED
        text = signed["signature"]
        index = data.draw(st.integers(0, len(text) - 1))
        char = data.draw(st.sampled_from("ABCxyz019-_.=").filter(lambda c: c != text[index]))
        tampered = dict(signed, signature=text[:index] + char + text[index + 1 :])
        with pytest.raises(SignatureError):
            store.verify(tampered)


class TestTrustStoreLoading:
    """JWKS validation and key rotation."""

    @pytest.mark.parametrize(("old_alg", "new_alg"), [("EdDSA", "ES256"), ("ES256", "EdDSA"), ("ES256", "ES256")])
    def test_rotation_old_and_new_keys_both_valid(self, old_alg: str, new_alg: str) -> None:
        """During rotation the JWKS holds both keys and events from either verify; after removal the old fails.
        Mixed algorithms are the common case now: an EdDSA key replaced by an ES256 one (or back)."""
        old, new = Signer.generate(old_alg, participant="UDMS"), Signer.generate(new_alg, participant="UDMS")
        both = TrustStore.from_jwks({"keys": [old.public_jwk(), new.public_jwk()]})
        assert [key.alg for key in both.keys] == [old_alg, new_alg]
        assert both.verify(old.sign(make_event())).kid == old.kid
        assert both.verify(new.sign(make_event())).kid == new.kid
        after = TrustStore.from_jwks({"keys": [new.public_jwk()]})
        assert reason_of(after, old.sign(make_event())) == "unknown_key"

    def test_private_key_in_jwks_refused(self) -> None:
        """A JWKS entry with a private member 'd' is a configuration error."""
        jwk = dict(_SIGNERS["EdDSA"].public_jwk(), d="AAAA")
        with pytest.raises(ConfigError, match="private"):
            TrustStore.from_jwks({"keys": [jwk]})

    @pytest.mark.parametrize(
        "change",
        [
            {"kid": "not-the-thumbprint"},
            {"alg": "ES256"},
            {"use": "enc"},
            {"key_ops": ["sign"]},
            {"mpid": "toolong"},
            {"kty": "RSA"},
            {"crv": "X25519"},
            {"x": "!!"},
            {"x5c": ["bm90IGEgY2VydA=="]},
        ],
        ids=repr,
    )
    def test_invalid_entries(self, change: dict[str, Any]) -> None:
        """Inconsistent or unsupported JWK members are configuration errors naming keys[0]."""
        jwk = dict(_SIGNERS["EdDSA"].public_jwk(), **change)
        with pytest.raises(ConfigError, match=r"keys\[0\]"):
            TrustStore.from_jwks({"keys": [jwk]})

    def test_duplicate_key(self) -> None:
        """The same key twice is a configuration error."""
        jwk = _SIGNERS["EdDSA"].public_jwk()
        with pytest.raises(ConfigError):
            TrustStore.from_jwks({"keys": [jwk, dict(jwk)]})

    def test_not_a_jwks(self) -> None:
        """A document without a keys array is a configuration error."""
        with pytest.raises(ConfigError):
            TrustStore.from_jwks({"kty": "OKP"})

    def test_minimal_jwk_without_kid(self) -> None:
        """kid, alg and use are optional: the kid is computed as the thumbprint."""
        full = _SIGNERS["EdDSA"].public_jwk()
        minimal = {k: full[k] for k in ("kty", "crv", "x")}
        store = TrustStore.from_jwks({"keys": [minimal]})
        assert store.keys[0].kid == _SIGNERS["EdDSA"].kid

    def test_from_jwks_file_errors(self, tmp_path: Any) -> None:
        """Missing or non-JSON files raise ConfigError."""
        with pytest.raises(ConfigError):
            TrustStore.from_jwks_file(tmp_path / "missing.json")
        bad = tmp_path / "bad.json"
        bad.write_text("{")
        with pytest.raises(ConfigError):
            TrustStore.from_jwks_file(bad)


# The Ed25519 points of small order, as public-key encodings (Chalkias, Garillot, Nikolaenko, "Taming the many
# EdDSAs", 2020): the 8 points in canonical form, then the 6 non-canonical encodings (the sign bit set on x = 0, or
# y + p in place of y < 19). Hex, little-endian as on the wire.
SMALL_ORDER_ENCODINGS = [
    "0100000000000000000000000000000000000000000000000000000000000000",  # order 1: the neutral element
    "ecffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff7f",  # order 2
    "0000000000000000000000000000000000000000000000000000000000000000",  # order 4
    "0000000000000000000000000000000000000000000000000000000000000080",  # order 4
    "26e8958fc2b227b045c3f489f2ef98f0d5dfac05d3c63339b13802886d53fc05",  # order 8
    "26e8958fc2b227b045c3f489f2ef98f0d5dfac05d3c63339b13802886d53fc85",  # order 8
    "c7176a703d4dd84fba3c0b760d10670f2a2053fa2c39ccc64ec7fd7792ac037a",  # order 8
    "c7176a703d4dd84fba3c0b760d10670f2a2053fa2c39ccc64ec7fd7792ac03fa",  # order 8
    "0100000000000000000000000000000000000000000000000000000000000080",  # neutral element, sign bit set
    "ecffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff",  # order 2, sign bit set
    "eeffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff7f",  # y = p + 1: the neutral element
    "eeffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff",  # y = p + 1, sign bit set
    "edffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff7f",  # y = p: order 4
    "edffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff",  # y = p, sign bit set
]


def okp_jwk(raw: bytes) -> dict[str, Any]:
    return {"kty": "OKP", "crv": "Ed25519", "x": b64url_encode(raw).decode()}


class TestSmallOrderKeys:
    """Issue 14: the trust store accepted the identity point as a public key, under which a trivial signature
    (R = the identity, S = 0) verifies any event."""

    @pytest.mark.parametrize("encoding", SMALL_ORDER_ENCODINGS)
    def test_refused_when_loading_a_jwks(self, encoding: str) -> None:
        """Every small-order encoding is a ConfigError naming the entry and its key id."""
        jwk = okp_jwk(bytes.fromhex(encoding))
        kid = thumbprint(Ed25519PublicKey.from_public_bytes(bytes.fromhex(encoding)))
        good = Signer.generate().public_jwk()
        with pytest.raises(ConfigError, match=rf"keys\[1\]: key {kid}: .*small-order") as info:
            TrustStore.from_jwks({"keys": [good, jwk]})
        assert info.value.key == "keys[1]"

    def test_named_by_the_kid_in_the_file(self) -> None:
        jwk = dict(okp_jwk(bytes.fromhex(SMALL_ORDER_ENCODINGS[0])), kid="partner-2025")
        with pytest.raises(ConfigError, match="key partner-2025: .*small-order"):
            TrustStore.from_jwks({"keys": [jwk]})

    def test_the_trivial_forgery(self) -> None:
        """What the refusal prevents: with the identity as a trusted key, R = identity and S = 0 verify any event."""
        identity = bytes.fromhex(SMALL_ORDER_ENCODINGS[0])
        key = Ed25519PublicKey.from_public_bytes(identity)
        store = TrustStore([TrustedKey(thumbprint(key), "EdDSA", key)])  # built past the JWKS check
        forged = with_header(dict(make_event(), signature="x..y"), {"alg": "EdDSA", "kid": thumbprint(key)},
                             b64url_encode(identity + bytes(32)).decode())
        assert store.verify(forged).kid == thumbprint(key)
        with pytest.raises(ConfigError):
            TrustStore.from_jwks({"keys": [okp_jwk(identity)]})

    @settings(max_examples=50)
    @given(st.binary(min_size=32, max_size=32))
    def test_ordinary_keys_accepted(self, seed: bytes) -> None:
        """Keys made from any seed are of large order: never refused."""
        signer = Signer(Ed25519PrivateKey.from_private_bytes(seed))
        assert TrustStore.from_jwks(signer.public_jwks()).verify(signer.sign(make_event())).kid == signer.kid

    def test_the_order_8_points_are_negatives(self) -> None:
        """A check on the list itself: the second pair of order-8 points has y = p - y of the first."""
        p = 2**255 - 19
        y_first = int.from_bytes(bytes.fromhex(SMALL_ORDER_ENCODINGS[4]), "little")
        assert (p - y_first).to_bytes(32, "little").hex() == SMALL_ORDER_ENCODINGS[6]

    @pytest.mark.parametrize("encoding", ["02" + "00" * 31, "ff" * 31 + "7f", "ec" + "ff" * 30 + "7e"])
    def test_other_encodings_are_not_small_order(self, encoding: str) -> None:
        """Points of large order, and encodings that are no point at all, are not mistaken for small ones."""
        assert not is_small_order(Ed25519PublicKey.from_public_bytes(bytes.fromhex(encoding)))


class TestBase64url:
    @settings(max_examples=500)
    @given(data=st.binary(max_size=300))
    def test_encode_is_rfc_7515_base64url(self, data: bytes) -> None:
        """pybase64 (SIMD) gives what the standard library gives, unpadded, and decodes back strictly."""
        expected = base64.urlsafe_b64encode(data).rstrip(b"=")
        assert b64url_encode(data) == expected
        assert b64url_decode(expected.decode(), "x") == data
