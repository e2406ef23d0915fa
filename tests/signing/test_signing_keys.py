"""Key material: thumbprints, key files written 0600, the permission check, PEM loading."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from bridge.errors import SignatureError
from bridge.signing import Signer, check_private_key_permissions
from bridge.signing.jws import b64url_decode
from bridge.signing.keys import public_key_from_jwk, thumbprint, write_private_key


class TestThumbprint:
    """kid = RFC 7638 thumbprint."""

    def test_rfc8037_appendix_a3_example(self) -> None:
        """RFC 8037 A.3: the Ed25519 example key's thumbprint is kPrK_qmxVWaYVA9wwBF6Iuo3vVzz7TxHCTwXBygrS4k."""
        jwk = {"kty": "OKP", "crv": "Ed25519", "x": "11qYAYKxCrfVS_7TyWQHOg7hcvPapiMlrwIaaPcHURo"}
        assert thumbprint(public_key_from_jwk(jwk)) == "kPrK_qmxVWaYVA9wwBF6Iuo3vVzz7TxHCTwXBygrS4k"

    def test_rfc8037_private_key_gives_example_public_key(self) -> None:
        """RFC 8037 A.1/A.2: the example private key d derives x, so our kid for it is the RFC's."""
        d = b64url_decode("nWGxne_9WmC6hEr0kuwsxERJxWl7MmkZcDusAxyuf2A", "d")
        signer = Signer(Ed25519PrivateKey.from_private_bytes(d))
        assert signer.public_jwk()["x"] == "11qYAYKxCrfVS_7TyWQHOg7hcvPapiMlrwIaaPcHURo"
        assert signer.kid == "kPrK_qmxVWaYVA9wwBF6Iuo3vVzz7TxHCTwXBygrS4k"

    def test_ec_thumbprint_matches_joserfc(self) -> None:
        """For P-256 our thumbprint equals joserfc's independent implementation."""
        from joserfc.jwk import ECKey

        signer = Signer.generate("ES256")
        assert ECKey.import_key(signer.public_jwk()).thumbprint() == signer.kid


class TestKeyFiles:
    """Private key files: created 0600, checked before use."""

    @pytest.mark.parametrize("alg", ["EdDSA", "ES256"])
    def test_written_with_mode_0600_and_reloads(self, tmp_path: Path, alg: str) -> None:
        """write_private_key creates a 0600 PKCS#8 PEM that from_key_file loads to the same kid."""
        signer = Signer.generate(alg)
        path = tmp_path / "k.pem"
        old = os.umask(0)  # even with a permissive umask the file is 0600
        try:
            write_private_key(path, signer.private_key)
        finally:
            os.umask(old)
        assert stat.S_IMODE(path.stat().st_mode) == 0o600
        assert path.read_bytes().startswith(b"-----BEGIN PRIVATE KEY-----")
        assert Signer.from_key_file(path).kid == signer.kid

    def test_refuses_to_overwrite(self, tmp_path: Path) -> None:
        """An existing key file is never overwritten."""
        path = tmp_path / "k.pem"
        path.write_text("x")
        with pytest.raises(FileExistsError):
            write_private_key(path, Ed25519PrivateKey.generate())

    @pytest.mark.parametrize("mode", [0o640, 0o604, 0o644, 0o660, 0o602])
    def test_loose_permissions_refused(self, tmp_path: Path, mode: int) -> None:
        """Group/other access raises key_permissions, both directly and in from_key_file."""
        path = tmp_path / "k.pem"
        write_private_key(path, Ed25519PrivateKey.generate())
        path.chmod(mode)
        with pytest.raises(SignatureError) as info:
            check_private_key_permissions(path)
        assert info.value.reason == "key_permissions"
        with pytest.raises(SignatureError):
            Signer.from_key_file(path)
        assert Signer.from_key_file(path, check_permissions=False).alg == "EdDSA"

    @pytest.mark.parametrize("mode", [0o600, 0o400])
    def test_owner_only_permissions_accepted(self, tmp_path: Path, mode: int) -> None:
        """0600 and 0400 pass the check."""
        path = tmp_path / "k.pem"
        write_private_key(path, Ed25519PrivateKey.generate())
        path.chmod(mode)
        check_private_key_permissions(path)

    def test_missing_and_non_regular_files(self, tmp_path: Path) -> None:
        """A missing path or a directory is invalid_key, without a traceback-worthy OSError."""
        for path in (tmp_path / "missing.pem", tmp_path):
            with pytest.raises(SignatureError) as info:
                check_private_key_permissions(path)
            assert info.value.reason == "invalid_key"

    def test_unsupported_key_types(self, tmp_path: Path) -> None:
        """RSA and P-384 keys are refused with invalid_key; so is garbage."""
        keys = [rsa.generate_private_key(65537, 2048), ec.generate_private_key(ec.SECP384R1())]
        for index, key in enumerate(keys):
            path = tmp_path / f"k{index}.pem"
            fd = os.open(path, os.O_WRONLY | os.O_CREAT, 0o600)
            with os.fdopen(fd, "wb") as handle:
                handle.write(
                    key.private_bytes(
                        serialization.Encoding.PEM,
                        serialization.PrivateFormat.PKCS8,
                        serialization.NoEncryption(),
                    )
                )
            with pytest.raises(SignatureError) as info:
                Signer.from_key_file(path)
            assert info.value.reason == "invalid_key"
        garbage = tmp_path / "g.pem"
        fd = os.open(garbage, os.O_WRONLY | os.O_CREAT, 0o600)
        os.write(fd, b"not a key")
        os.close(fd)
        with pytest.raises(SignatureError) as info:
            Signer.from_key_file(garbage)
        assert info.value.reason == "invalid_key"
        assert "not a key" not in str(info.value)
