"""bridge/service.py's development key: what a fresh installation (the README's `scripts/run` on the example config)
generates, and that a key made before the default changed is kept, not replaced."""

from __future__ import annotations

import json
import stat
from pathlib import Path

import structlog.testing
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from bridge.config import load_config
from bridge.service import DEV_JWKS_NAME, DEV_KEY_NAME, load_signer
from bridge.signing import Signer, TrustStore
from bridge.signing.keys import write_private_key
from tests.e2e.conftest import write_config


def development_config(tmp_path: Path) -> Path:
    """The example's signing layout: no signing.key, the development JWKS as the trust file."""
    return write_config(tmp_path, ".unused", signing={"key": None, "trust": f"var/state/{DEV_JWKS_NAME}"})


def test_a_fresh_installation_generates_an_es256_key_and_its_trust_file(tmp_path: Path) -> None:
    """First start: an ES256 (P-256) key, mode 0600, and the JWKS beside it; the daemon's own events verify
    against that JWKS, which the example config names as signing.trust."""
    config = load_config(development_config(tmp_path))
    with structlog.testing.capture_logs() as logs:
        signer = load_signer(config)
    assert signer is not None and signer.alg == "ES256"
    key_path = config.state.dir / DEV_KEY_NAME
    assert stat.S_IMODE(key_path.stat().st_mode) == 0o600
    assert Signer.from_key_file(key_path).kid == signer.kid
    (jwk,) = json.loads((config.state.dir / DEV_JWKS_NAME).read_text())["keys"]
    assert (jwk["kty"], jwk["crv"], jwk["alg"], jwk["kid"]) == ("EC", "P-256", "ES256", signer.kid)
    assert config.signing.trust is not None
    event = signer.sign({"id": "1", "source": "urn:mpid:DTNB"})
    assert TrustStore.from_jwks_file(config.signing.trust).verify(event).alg == "ES256"
    (entry,) = [entry for entry in logs if entry["event"] == "development_signing_key_generated"]
    assert (entry["alg"], entry["kid"]) == ("ES256", signer.kid) and "BEGIN" not in json.dumps(entry)


def test_a_development_key_made_before_is_kept_whatever_its_algorithm(tmp_path: Path) -> None:
    """An EdDSA development key from an earlier version stays in use (its JWKS may be in receivers' trust files
    already): no second key, no new JWKS, and the log says which key and algorithm sign."""
    config = load_config(development_config(tmp_path))
    config.state.dir.mkdir(parents=True)
    old = Signer(Ed25519PrivateKey.generate())
    write_private_key(config.state.dir / DEV_KEY_NAME, old.private_key)
    (config.state.dir / DEV_JWKS_NAME).write_text(json.dumps(old.public_jwks()))
    before = sorted(path.name for path in config.state.dir.iterdir())
    with structlog.testing.capture_logs() as logs:
        signer = load_signer(config)
    assert signer is not None and (signer.kid, signer.alg) == (old.kid, "EdDSA")
    assert sorted(path.name for path in config.state.dir.iterdir()) == before
    assert json.loads((config.state.dir / DEV_JWKS_NAME).read_text()) == old.public_jwks()
    assert [(entry["event"], entry["alg"]) for entry in logs] == [("development_signing_key_in_use", "EdDSA")]


def test_check_config_generates_nothing(tmp_path: Path) -> None:
    """create=False (check-config): no key yet means None, and nothing is written."""
    config = load_config(development_config(tmp_path))
    assert load_signer(config, create=False) is None
    assert not config.state.dir.exists()
