"""Tests of bridge.adapters.encryption (the sealed-chunk format, key files) and the encrypted spool."""

from __future__ import annotations

import base64
import json
import os
import secrets
import stat
import tracemalloc
from collections.abc import Iterator
from datetime import date
from pathlib import Path

import pytest

from bridge.adapters import encryption
from bridge.adapters.encryption import (
    CHUNK_SIZE,
    HEADER_SIZE,
    TAG_SIZE,
    FileCipher,
    generate_key_file,
    is_encrypted,
    key_id,
    read_key_file,
)
from bridge.adapters.spool import Claim, Spool
from bridge.errors import StorageError


@pytest.fixture
def key() -> bytes:
    return secrets.token_bytes(32)


@pytest.fixture
def cipher(key: bytes) -> FileCipher:
    return FileCipher(key)


def encrypt(cipher: FileCipher, tmp_path: Path, data: bytes, name: str = "f") -> Path:
    src = tmp_path / f"{name}.plain"
    src.write_bytes(data)
    return cipher.encrypt_file(src, tmp_path / f"{name}.enc")


def decrypt(cipher: FileCipher, path: Path) -> bytes:
    return b"".join(cipher.decrypt_stream(path))


class TestFormat:
    @pytest.mark.parametrize(
        "size", [0, 1, 100, CHUNK_SIZE - 1, CHUNK_SIZE, CHUNK_SIZE + 1, 3 * CHUNK_SIZE, 3 * CHUNK_SIZE + 17]
    )
    def test_round_trip(self, cipher: FileCipher, tmp_path: Path, size: int) -> None:
        """Every size, including empty and exact chunk multiples, decrypts to the original bytes."""
        data = secrets.token_bytes(size)
        enc = encrypt(cipher, tmp_path, data)
        assert decrypt(cipher, enc) == data
        chunks = max(1, -(-size // CHUNK_SIZE))
        assert enc.stat().st_size == HEADER_SIZE + chunks * TAG_SIZE + size

    def test_header_layout(self, cipher: FileCipher, key: bytes, tmp_path: Path) -> None:
        """Magic, version, chunk size, key id (SHA-256 prefix of the key), then a random base nonce."""
        enc = encrypt(cipher, tmp_path, b"hello").read_bytes()
        assert enc[:6] == b"DTNENC" and enc[6] == 1 and enc[7] == 16
        assert enc[8:16] == key_id(key) and cipher.key_id == key_id(key).hex()
        other = encrypt(cipher, tmp_path, b"hello", "g").read_bytes()
        assert enc[16:28] != other[16:28], "each file gets its own base nonce"
        assert b"hello" not in enc

    def test_ciphertext_hides_plaintext(self, cipher: FileCipher, tmp_path: Path) -> None:
        """Personal data never appears in the stored bytes."""
        data = b"026|SMITH JOHN|1 HIGH STREET|\n" * 5000
        enc = encrypt(cipher, tmp_path, data).read_bytes()
        assert b"SMITH" not in enc and is_encrypted(tmp_path / "f.enc")
        assert not is_encrypted(tmp_path / "f.plain")

    def test_streaming_uneven_pieces(self, cipher: FileCipher) -> None:
        """encrypt_chunks accepts pieces of any size; the output does not depend on how input was split."""
        data = secrets.token_bytes(2 * CHUNK_SIZE + 5)
        pieces = [data[i : i + 7777] for i in range(0, len(data), 7777)]
        assert cipher.decrypt_bytes(b"".join(cipher.encrypt_chunks(pieces))) == data
        assert cipher.decrypt_bytes(cipher.encrypt_bytes(data)) == data

    def test_bounded_memory(self, cipher: FileCipher, tmp_path: Path) -> None:
        """Encrypting and decrypting 16 MiB keeps peak allocations at a few chunks, not the file size."""
        src = tmp_path / "big"
        with src.open("wb") as out:
            for _ in range(256):
                out.write(secrets.token_bytes(CHUNK_SIZE))
        tracemalloc.start()
        try:
            enc = cipher.encrypt_file(src, tmp_path / "big.enc")
            total = sum(len(chunk) for chunk in cipher.decrypt_stream(enc))
            _, peak = tracemalloc.get_traced_memory()
        finally:
            tracemalloc.stop()
        assert total == 256 * CHUNK_SIZE
        assert peak < 2 * 1024 * 1024


class TestErrors:
    def test_wrong_key(self, cipher: FileCipher, tmp_path: Path) -> None:
        """Another key is named as such, with both key ids and the rotation hint."""
        enc = encrypt(cipher, tmp_path, b"data")
        other = FileCipher(secrets.token_bytes(32))
        with pytest.raises(StorageError, match="wrong key") as info:
            decrypt(other, enc)
        assert cipher.key_id in str(info.value) and "encryption_keys_old" in str(info.value)

    def test_old_key_still_reads(self, cipher: FileCipher, key: bytes, tmp_path: Path) -> None:
        """After a rotation the old key, listed as old, still decrypts; new files use the new key."""
        enc = encrypt(cipher, tmp_path, b"before rotation")
        rotated = FileCipher(secrets.token_bytes(32), old_keys=[key])
        assert decrypt(rotated, enc) == b"before rotation"
        new = encrypt(rotated, tmp_path, b"after", "n")
        assert new.read_bytes()[8:16].hex() == rotated.key_id != cipher.key_id

    @pytest.mark.parametrize("where", ["header_nonce", "first_chunk", "last_chunk", "tag"])
    def test_tampered(self, cipher: FileCipher, tmp_path: Path, where: str) -> None:
        """One flipped bit anywhere (header, data, tag) fails authentication."""
        enc = encrypt(cipher, tmp_path, secrets.token_bytes(2 * CHUNK_SIZE + 10))
        data = bytearray(enc.read_bytes())
        offset = {
            "header_nonce": 20,
            "first_chunk": HEADER_SIZE + 5,
            "last_chunk": len(data) - TAG_SIZE - 3,
            "tag": len(data) - 1,
        }[where]
        data[offset] ^= 0x01
        enc.write_bytes(bytes(data))
        with pytest.raises(StorageError, match="tampered"):
            decrypt(cipher, enc)

    def test_truncated_at_chunk_boundary(self, cipher: FileCipher, tmp_path: Path) -> None:
        """Cutting whole chunks off the end is detected (the last remaining chunk is not flagged final)."""
        enc = encrypt(cipher, tmp_path, secrets.token_bytes(2 * CHUNK_SIZE + 10))
        enc.write_bytes(enc.read_bytes()[: HEADER_SIZE + 2 * (CHUNK_SIZE + TAG_SIZE)])
        with pytest.raises(StorageError, match="truncated"):
            decrypt(cipher, enc)

    def test_truncated_mid_chunk(self, cipher: FileCipher, tmp_path: Path) -> None:
        """Cutting inside a chunk fails too."""
        enc = encrypt(cipher, tmp_path, secrets.token_bytes(CHUNK_SIZE + 100))
        enc.write_bytes(enc.read_bytes()[:-50])
        with pytest.raises(StorageError, match="tampered|truncated"):
            decrypt(cipher, enc)

    def test_truncated_header(self, cipher: FileCipher, tmp_path: Path) -> None:
        enc = encrypt(cipher, tmp_path, b"x")
        enc.write_bytes(enc.read_bytes()[:20])
        with pytest.raises(StorageError, match="truncated"):
            decrypt(cipher, enc)

    def test_chunks_swapped(self, cipher: FileCipher, tmp_path: Path) -> None:
        """Reordered chunks fail: the counter is part of each nonce."""
        enc = encrypt(cipher, tmp_path, secrets.token_bytes(3 * CHUNK_SIZE))
        raw = enc.read_bytes()
        size = CHUNK_SIZE + TAG_SIZE
        first, second = (
            raw[HEADER_SIZE : HEADER_SIZE + size],
            raw[HEADER_SIZE + size : HEADER_SIZE + 2 * size],
        )
        enc.write_bytes(raw[:HEADER_SIZE] + second + first + raw[HEADER_SIZE + 2 * size :])
        with pytest.raises(StorageError, match="tampered"):
            decrypt(cipher, enc)

    def test_not_encrypted(self, cipher: FileCipher, tmp_path: Path) -> None:
        plain = tmp_path / "plain"
        plain.write_bytes(b"ZHV|0001|D0010002|\n")
        with pytest.raises(StorageError, match="not a dtn-bridge encrypted file"):
            decrypt(cipher, plain)

    def test_unknown_version(self, cipher: FileCipher, tmp_path: Path) -> None:
        enc = encrypt(cipher, tmp_path, b"x")
        raw = bytearray(enc.read_bytes())
        raw[6] = 9
        enc.write_bytes(bytes(raw))
        with pytest.raises(StorageError, match="version 9"):
            decrypt(cipher, enc)

    def test_missing_file(self, cipher: FileCipher, tmp_path: Path) -> None:
        with pytest.raises(StorageError, match="cannot read"):
            decrypt(cipher, tmp_path / "nope")

    def test_bad_key_length(self) -> None:
        with pytest.raises(ValueError):
            FileCipher(b"short")


class TestKeyFile:
    def test_generate_and_read(self, tmp_path: Path) -> None:
        """keygen writes base64 text with mode 0600 that reads back as the same 32 bytes."""
        path = tmp_path / "spool.key"
        key = generate_key_file(path)
        assert stat.S_IMODE(path.stat().st_mode) == 0o600
        assert base64.b64decode(path.read_text().strip()) == key
        assert read_key_file(path) == key
        assert FileCipher.from_key_file(path).key_id == key_id(key).hex()

    def test_generate_refuses_to_overwrite(self, tmp_path: Path) -> None:
        path = tmp_path / "spool.key"
        path.write_bytes(b"x")
        with pytest.raises(StorageError, match="refusing to overwrite"):
            generate_key_file(path)
        assert path.read_bytes() == b"x"

    def test_raw_key(self, tmp_path: Path) -> None:
        path = tmp_path / "raw.key"
        key = secrets.token_bytes(32)
        path.write_bytes(key)
        path.chmod(0o600)
        assert read_key_file(path) == key

    def test_read_only_owner_is_fine(self, tmp_path: Path) -> None:
        path = tmp_path / "ro.key"
        generate_key_file(path)
        path.chmod(0o400)
        assert len(read_key_file(path)) == 32

    @pytest.mark.parametrize("mode", [0o640, 0o604, 0o644, 0o660])
    def test_refuses_open_modes(self, tmp_path: Path, mode: int) -> None:
        """A key group or others can read is refused, naming the mode and the fix."""
        path = tmp_path / "open.key"
        generate_key_file(path)
        path.chmod(mode)
        with pytest.raises(StorageError, match=f"mode {mode:04o}.*chmod 600"):
            read_key_file(path)

    @pytest.mark.parametrize(
        "content", [b"", b"too short", b"A" * 31, base64.b64encode(b"x" * 16), b"!" * 44]
    )
    def test_refuses_bad_content(self, tmp_path: Path, content: bytes) -> None:
        path = tmp_path / "bad.key"
        path.write_bytes(content)
        path.chmod(0o600)
        with pytest.raises(StorageError, match="32 random bytes"):
            read_key_file(path)

    def test_missing(self, tmp_path: Path) -> None:
        with pytest.raises(StorageError, match="cannot read encryption key"):
            read_key_file(tmp_path / "none.key")

    def test_symlink_refused(self, tmp_path: Path) -> None:
        """The key is not read through a symlink (O_NOFOLLOW): its mode check would be of the wrong file."""
        real = tmp_path / "real.key"
        generate_key_file(real)
        link = tmp_path / "link.key"
        link.symlink_to(real)
        with pytest.raises(StorageError):
            read_key_file(link)


# ------------------------------------------------------------------------------------------------ encrypted spool


@pytest.fixture
def spool(tmp_path: Path, cipher: FileCipher) -> Spool:
    (tmp_path / "processing").mkdir()
    return Spool(tmp_path / "processing", tmp_path / "archive", tmp_path / "quarantine", cipher=cipher)


def claimed(spool: Spool, name: str, data: bytes) -> Claim:
    inbound = spool.processing.parent / "inbound"
    inbound.mkdir(exist_ok=True)
    (inbound / name).write_bytes(data)
    claim = spool.claim(inbound / name)
    assert claim is not None
    return claim


def mode_of(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


class TestEncryptedSpool:
    def test_archive_writes_enc_and_removes_plaintext(self, spool: Spool, cipher: FileCipher) -> None:
        """Archive stores <name>.enc (0640, folders 0750), the claim is gone and no plaintext is left."""
        data = b"ZHV|0001|D0010002|SMITH|\n" * 100
        claim = claimed(spool, "D0010002.usr", data)
        final = spool.archive(claim, date(2024, 5, 6))
        assert final == spool.archive_dir / "2024" / "05" / "06" / "D0010002.usr.enc"
        assert decrypt(cipher, final) == data and b"SMITH" not in final.read_bytes()
        assert not claim.path.exists()
        assert mode_of(final) == 0o640
        for folder in (final.parent, final.parent.parent, final.parent.parent.parent, spool.archive_dir):
            assert mode_of(folder) == 0o750
        assert sorted(p.name for p in final.parent.iterdir()) == ["D0010002.usr.enc"], "no staging leftovers"

    def test_archive_same_name_gets_suffix(self, spool: Spool, cipher: FileCipher) -> None:
        day = date(2024, 5, 6)
        first = spool.archive(claimed(spool, "a.usr", b"one"), day)
        second = spool.archive(claimed(spool, "a.usr", b"two"), day)
        assert (first.name, second.name) == ("a.usr.enc", "a.1.usr.enc")
        assert decrypt(cipher, first) == b"one" and decrypt(cipher, second) == b"two"

    def test_archive_resumes_after_crash_before_unlink(
        self, spool: Spool, cipher: FileCipher, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """A crash after the encrypted copy is in place but before the claim is removed: the retry finishes
        the move without a second copy, and the file exists at every moment."""
        claim = claimed(spool, "b.usr", b"payload")
        from bridge.adapters.spool import archive as spool_module

        real_unlink = spool_module.unlink_source

        def crash(_src: Path) -> None:
            raise StorageError("simulated crash")

        monkeypatch.setattr(spool_module, "unlink_source", crash)
        with pytest.raises(StorageError, match="simulated"):
            spool.archive(claim, date(2024, 1, 2))
        assert claim.path.exists()
        monkeypatch.setattr(spool_module, "unlink_source", real_unlink)
        final = spool.archive(claim, date(2024, 1, 2))
        assert final.name == "b.usr.enc" and not claim.path.exists()
        assert sorted(p.name for p in final.parent.iterdir()) == ["b.usr.enc"]

    def test_failed_encryption_keeps_the_claim(self, spool: Spool, monkeypatch: pytest.MonkeyPatch) -> None:
        """If encrypting fails midway the plaintext claim stays in processing and nothing half-written remains."""
        claim = claimed(spool, "c.usr", b"x" * (3 * CHUNK_SIZE))

        def broken(_chunks: object) -> Iterator[bytes]:
            yield b"DTNENC"
            raise OSError(28, "No space left on device")

        monkeypatch.setattr(spool.cipher, "encrypt_chunks", broken)
        with pytest.raises(StorageError, match="No space left"):
            spool.archive(claim, date(2024, 1, 2))
        assert claim.path.read_bytes() == b"x" * (3 * CHUNK_SIZE)
        folder = spool.archive_dir / "2024" / "01" / "02"
        assert list(folder.iterdir()) == []

    def test_quarantine_encrypts_file_and_report(self, spool: Spool, cipher: FileCipher) -> None:
        """Quarantine writes <name>.enc and <name>.error.json.enc; the report's quoted values are hidden."""
        claim = claimed(spool, "bad.usr", b"026|SECRET-VALUE|\n")
        final = spool.quarantine(claim, {"defects": ["field 2 'SECRET-VALUE' is invalid"]})
        assert final == spool.quarantine_dir / "bad.usr.enc"
        report = spool.quarantine_dir / "bad.usr.error.json.enc"
        assert sorted(p.name for p in spool.quarantine_dir.iterdir()) == sorted([report.name, final.name])
        assert decrypt(cipher, final) == b"026|SECRET-VALUE|\n"
        assert json.loads(decrypt(cipher, report)) == {"defects": ["field 2 'SECRET-VALUE' is invalid"]}
        assert b"SECRET" not in report.read_bytes() and b"SECRET" not in final.read_bytes()
        assert mode_of(final) == mode_of(report) == 0o640 and mode_of(spool.quarantine_dir) == 0o750
        assert not claim.path.exists()

    def test_quarantine_same_name_gets_suffix(self, spool: Spool, cipher: FileCipher) -> None:
        spool.quarantine(claimed(spool, "q.usr", b"1"), {"n": 1})
        second = spool.quarantine(claimed(spool, "q.usr", b"2"), {"n": 2})
        assert second.name == "q.1.usr.enc"
        assert json.loads(decrypt(cipher, spool.quarantine_dir / "q.1.usr.error.json.enc")) == {"n": 2}
        assert json.loads(decrypt(cipher, spool.quarantine_dir / "q.usr.error.json.enc")) == {"n": 1}

    def test_quarantine_resumes_after_crash(
        self, spool: Spool, cipher: FileCipher, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        claim = claimed(spool, "r.usr", b"again")
        from bridge.adapters.spool import archive as spool_module

        real_unlink = spool_module.unlink_source
        monkeypatch.setattr(
            spool_module, "unlink_source", lambda _src: (_ for _ in ()).throw(StorageError("x"))
        )
        with pytest.raises(StorageError):
            spool.quarantine(claim, {"try": 1})
        monkeypatch.setattr(spool_module, "unlink_source", real_unlink)
        final = spool.quarantine(claim, {"try": 2})
        assert final.name == "r.usr.enc" and not claim.path.exists()
        assert json.loads(decrypt(cipher, spool.quarantine_dir / "r.usr.error.json.enc")) == {"try": 2}
        assert sorted(p.name for p in spool.quarantine_dir.iterdir()) == ["r.usr.enc", "r.usr.error.json.enc"]

    def test_custom_modes(self, tmp_path: Path, cipher: FileCipher) -> None:
        (tmp_path / "processing").mkdir()
        spool = Spool(
            tmp_path / "processing",
            tmp_path / "archive",
            tmp_path / "quarantine",
            file_mode=0o600,
            dir_mode=0o700,
            cipher=cipher,
        )
        final = spool.archive(claimed(spool, "m.usr", b"m"), date(2024, 1, 1))
        assert mode_of(final) == 0o600 and mode_of(final.parent) == 0o700

    def test_plaintext_spool_modes(self, tmp_path: Path) -> None:
        """Without a cipher the defaults are the same: files 0640, folders 0750, names unchanged."""
        (tmp_path / "processing").mkdir()
        old = os.umask(0o022)
        try:
            spool = Spool(tmp_path / "processing", tmp_path / "archive", tmp_path / "quarantine")
            final = spool.archive(claimed(spool, "p.usr", b"p"), date(2024, 1, 1))
            q = spool.quarantine(claimed(spool, "p.usr", b"p"), {"x": 1})
        finally:
            os.umask(old)
        assert final.name == "p.usr" and mode_of(final) == 0o640 and mode_of(final.parent) == 0o750
        assert q.name == "p.usr" and mode_of(q) == 0o640 and mode_of(spool.quarantine_dir) == 0o750
        assert mode_of(spool.quarantine_dir / "p.usr.error.json") == 0o640


def test_module_exports() -> None:
    assert set(encryption.__all__) >= {"FileCipher", "read_key_file", "generate_key_file"}
