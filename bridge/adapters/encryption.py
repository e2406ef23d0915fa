"""Encryption at rest for the archive and quarantine: AES-256-GCM in sealed chunks, with the key from a file.

Why it looks like this:

* Archived and quarantined flow files hold personal data (names, addresses, meter readings), so a stolen disk or
  backup must not disclose them. The key lives in a separate file (mode 0600) that can be kept off the backups.
* Files can be up to `inbound.max_file_bytes` (1 GiB) and memory must stay bounded, so the file is sealed in chunks
  of 64 KiB, each its own AES-GCM message (a "STREAM"-like construction):

      header   28 bytes: magic b"DTNENC" | version (1) | log2(chunk size) (16) | key id (8) | base nonce (12)
      chunk i  AES-GCM(key, nonce = (base nonce + i) mod 2**96, plaintext[i*64KiB : (i+1)*64KiB],
                       associated data = header | final flag (1 byte: 1 for the last chunk, else 0))
               = ciphertext (same length as the plaintext) | 16-byte tag

  Every chunk but the last holds exactly one full chunk of plaintext; the last holds 0..64 KiB and is flagged, so
  an empty file is one empty final chunk. The counter in the nonce detects reordered or dropped chunks, the
  header in the associated data detects a swapped header, the final flag detects truncation at a chunk boundary.
* The key id is the first 8 bytes of SHA-256 of the key: a reader can pick the right key after a rotation (old
  keys stay readable through `FileCipher(key, old_keys=...)`) and say "wrong key" instead of "tampered".
* Random 96-bit base nonces per file, counters within a file: nonce reuse needs two files whose random ranges
  overlap, negligible for the lifetime of a key.

Errors are StorageError with the file's path and what went wrong (wrong key, truncated, tampered, not encrypted).
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import os
import secrets
import stat
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, BinaryIO

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from bridge.errors import StorageError

if TYPE_CHECKING:
    from bridge.config import SpoolConfig

__all__ = [
    "CHUNK_SIZE",
    "ENCRYPTED_SUFFIX",
    "HEADER_SIZE",
    "KEY_SIZE",
    "MAGIC",
    "FileCipher",
    "generate_key_file",
    "is_encrypted",
    "key_id",
    "read_key_file",
    "spool_cipher",
]

MAGIC = b"DTNENC"
VERSION = 1
KEY_SIZE = 32
KEY_ID_SIZE = 8
NONCE_SIZE = 12
TAG_SIZE = 16
CHUNK_SHIFT = 16
CHUNK_SIZE = 1 << CHUNK_SHIFT  # 64 KiB of plaintext per sealed chunk
HEADER_SIZE = len(MAGIC) + 2 + KEY_ID_SIZE + NONCE_SIZE  # 28
ENCRYPTED_SUFFIX = ".enc"
_MAX_CHUNKS = 1 << 32  # far beyond any flow file; keeps counters well inside the nonce space
_NONCE_MOD = 1 << (8 * NONCE_SIZE)
_FINAL = b"\x01"
_NOT_FINAL = b"\x00"


def key_id(key: bytes) -> bytes:
    """The first 8 bytes of SHA-256 of `key`: names a key in file headers without revealing it."""
    return hashlib.sha256(key).digest()[:KEY_ID_SIZE]


def read_key_file(path: str | os.PathLike[str]) -> bytes:
    """Read a 32-byte key from `path` (raw bytes, or base64 text); refuse a file group or others can access.

    The mode check is the point: a key readable by everyone protects nothing.
    """
    file = Path(path)
    try:
        fd = os.open(file, os.O_RDONLY | getattr(os, "O_CLOEXEC", 0) | getattr(os, "O_NOFOLLOW", 0))
    except OSError as exc:
        raise StorageError(f"cannot read encryption key {file}: {exc.strerror or exc}") from exc
    try:
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode):
            raise StorageError(f"encryption key {file} is not a regular file")
        mode = stat.S_IMODE(info.st_mode)
        if mode & 0o077:
            raise StorageError(
                f"encryption key {file} has mode {mode:04o}: group or others can access it; "
                f"run chmod 600 {file}"
            )
        data = os.read(fd, 4096)
    except OSError as exc:
        raise StorageError(f"cannot read encryption key {file}: {exc.strerror or exc}") from exc
    finally:
        os.close(fd)
    if len(data) == KEY_SIZE:
        return data
    try:
        decoded = base64.b64decode(data.strip(), validate=True)
    except (binascii.Error, ValueError):
        decoded = b""
    if len(decoded) != KEY_SIZE:
        raise StorageError(
            f"encryption key {file} must hold {KEY_SIZE} random bytes, raw or base64 "
            f"(dtn-bridge archive keygen writes one)"
        )
    return decoded


def generate_key_file(path: str | os.PathLike[str]) -> bytes:
    """Write a new random key (base64 text, mode 0600) to `path`, which must not exist; returns the key."""
    file = Path(path)
    key = secrets.token_bytes(KEY_SIZE)
    try:
        fd = os.open(file, os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_CLOEXEC", 0), 0o600)
    except FileExistsError:
        raise StorageError(
            f"{file} exists; refusing to overwrite a key (files encrypted with it need it)"
        ) from None
    except OSError as exc:
        raise StorageError(f"cannot create key file {file}: {exc.strerror or exc}") from exc
    try:
        os.fchmod(fd, 0o600)  # the open mode is masked by the umask; make it exact
        os.write(fd, base64.b64encode(key) + b"\n")
        os.fsync(fd)
    except OSError as exc:
        os.close(fd)
        try:
            os.unlink(file)
        except OSError:
            pass
        raise StorageError(f"cannot write key file {file}: {exc.strerror or exc}") from exc
    os.close(fd)
    return key


def spool_cipher(spool: SpoolConfig) -> FileCipher | None:
    """The cipher `spool.encryption_key` asks for (old keys for reading), or None: archive stays plaintext."""
    if spool.encryption_key is None:
        return None
    return FileCipher.from_key_file(spool.encryption_key, spool.encryption_keys_old)


def is_encrypted(path: str | os.PathLike[str]) -> bool:
    """True if the file starts with the encryption magic (an archived file written with a key)."""
    try:
        with open(path, "rb") as handle:
            return handle.read(len(MAGIC)) == MAGIC
    except OSError as exc:
        raise StorageError(f"cannot read {path}: {exc.strerror or exc}") from exc


class FileCipher:
    """Encrypts with one key; decrypts with it or any of `old_keys` (chosen by the key id in the header)."""

    def __init__(self, key: bytes, old_keys: Sequence[bytes] = ()) -> None:
        for k in (key, *old_keys):
            if len(k) != KEY_SIZE:
                raise ValueError(f"an AES-256 key is {KEY_SIZE} bytes, got {len(k)}")
        self._key = key
        self._id = key_id(key)
        self._keys = {key_id(k): AESGCM(k) for k in reversed((key, *old_keys))}

    @classmethod
    def from_key_file(
        cls, path: str | os.PathLike[str], old_key_files: Iterable[str | os.PathLike[str]] = ()
    ) -> FileCipher:
        """The cipher for `spool.encryption_key` (and `spool.encryption_keys_old` for reading)."""
        return cls(read_key_file(path), [read_key_file(p) for p in old_key_files])

    @property
    def key_id(self) -> str:
        """The current key's id as hex (shown by `archive keygen`, named in "wrong key" errors)."""
        return self._id.hex()

    # ------------------------------------------------------------------------------------------- encryption

    def encrypt_chunks(self, chunks: Iterable[bytes]) -> Iterator[bytes]:
        """Encrypt a stream of plaintext pieces (any sizes) into the sealed format, piece by piece."""
        base = secrets.token_bytes(NONCE_SIZE)
        header = MAGIC + bytes((VERSION, CHUNK_SHIFT)) + self._id + base
        yield header
        aead = self._keys[self._id]
        base_int = int.from_bytes(base, "big")
        buffer = bytearray()
        counter = 0
        pending: bytes | None = None  # a full chunk held back until we know whether it is the last
        for piece in chunks:
            buffer += piece
            while len(buffer) >= CHUNK_SIZE:
                if pending is not None:
                    yield _seal(aead, base_int, counter, header, pending, final=False)
                    counter += 1
                pending = bytes(buffer[:CHUNK_SIZE])
                del buffer[:CHUNK_SIZE]
        if pending is not None and buffer:
            yield _seal(aead, base_int, counter, header, pending, final=False)
            counter += 1
            pending = None
        last = pending if pending is not None else bytes(buffer)
        yield _seal(aead, base_int, counter, header, last, final=True)

    def encrypt_file(
        self, src: str | os.PathLike[str], dst: str | os.PathLike[str], mode: int = 0o640
    ) -> Path:
        """Encrypt `src` into `dst` atomically (temp file, fsync, rename); the plaintext is left in place."""
        from bridge.adapters.spool import write_atomic  # spool imports this module for its own use

        try:
            with open(src, "rb") as source:
                return write_atomic(
                    Path(dst), self.encrypt_chunks(iter(lambda: source.read(CHUNK_SIZE), b"")), mode=mode
                )
        except OSError as exc:
            raise StorageError(f"cannot read {src}: {exc.strerror or exc}") from exc

    def encrypt_bytes(self, data: bytes) -> bytes:
        """Small payloads (quarantine reports) in the same format."""
        return b"".join(self.encrypt_chunks((data,)))

    # ------------------------------------------------------------------------------------------- decryption

    def decrypt_stream(self, path: str | os.PathLike[str]) -> Iterator[bytes]:
        """Yield the plaintext of an encrypted file chunk by chunk (each authenticated before it is yielded).

        Truncation shows only at the end: trust the output once the iterator finished without a StorageError.
        """
        try:
            handle = open(path, "rb")  # noqa: SIM115 - only the open's errors are translated here
        except OSError as exc:
            raise StorageError(f"cannot read {path}: {exc.strerror or exc}") from exc
        with handle:
            yield from self.decrypt_io(handle, str(path))

    def decrypt_bytes(self, data: bytes, name: str = "<bytes>") -> bytes:
        """Decrypt a whole encrypted payload held in memory."""
        import io

        return b"".join(self.decrypt_io(io.BytesIO(data), name))

    def decrypt_io(self, handle: BinaryIO, name: str) -> Iterator[bytes]:
        """Decrypt from an open binary stream; `name` is used in error messages."""
        header = _read_exact(handle, HEADER_SIZE, name)
        if len(header) < len(MAGIC) or header[: len(MAGIC)] != MAGIC:
            raise StorageError(f"{name}: not a dtn-bridge encrypted file (no {MAGIC.decode()} header)")
        if len(header) < HEADER_SIZE:
            raise StorageError(f"{name}: truncated encrypted file (incomplete header)")
        version, shift = header[6], header[7]
        if version != VERSION:
            raise StorageError(
                f"{name}: unsupported encryption format version {version} (this bridge reads {VERSION})"
            )
        if not 10 <= shift <= 24:
            raise StorageError(f"{name}: corrupt encryption header (chunk size 2**{shift})")
        file_key_id = header[8 : 8 + KEY_ID_SIZE]
        aead = self._keys.get(file_key_id)
        if aead is None:
            raise StorageError(
                f"{name}: wrong key: the file was encrypted with key {file_key_id.hex()}, "
                f"the configured key(s) are {', '.join(k.hex() for k in self._keys)} "
                f"(after a rotation, list the old key in spool.encryption_keys_old)"
            )
        base_int = int.from_bytes(header[8 + KEY_ID_SIZE :], "big")
        sealed_size = (1 << shift) + TAG_SIZE
        counter = 0
        block = _read_exact(handle, sealed_size, name)
        while True:
            if len(block) < TAG_SIZE:
                raise StorageError(f"{name}: truncated encrypted file (chunk {counter} is incomplete)")
            nxt = _read_exact(handle, sealed_size, name) if len(block) == sealed_size else b""
            final = not nxt
            yield _open(aead, base_int, counter, header, block, final=final, name=name)
            if final:
                return
            counter += 1
            if counter >= _MAX_CHUNKS:
                raise StorageError(f"{name}: corrupt encrypted file (too many chunks)")
            block = nxt


def _nonce(base_int: int, counter: int) -> bytes:
    return ((base_int + counter) % _NONCE_MOD).to_bytes(NONCE_SIZE, "big")


def _seal(aead: AESGCM, base_int: int, counter: int, header: bytes, data: bytes, *, final: bool) -> bytes:
    if counter >= _MAX_CHUNKS:
        raise StorageError("file too large to encrypt (more than 2**32 chunks)")
    return aead.encrypt(_nonce(base_int, counter), data, header + (_FINAL if final else _NOT_FINAL))


def _open(
    aead: AESGCM, base_int: int, counter: int, header: bytes, block: bytes, *, final: bool, name: str
) -> bytes:
    nonce = _nonce(base_int, counter)
    try:
        return aead.decrypt(nonce, block, header + (_FINAL if final else _NOT_FINAL))
    except InvalidTag:
        pass
    if final:  # a full chunk sealed as "not the last" where the file ends: chunks were cut off
        try:
            aead.decrypt(nonce, block, header + _NOT_FINAL)
        except InvalidTag:
            pass
        else:
            raise StorageError(
                f"{name}: truncated encrypted file (ends after chunk {counter}, which is not the last)"
            )
    raise StorageError(
        f"{name}: encrypted file was tampered with or corrupted (chunk {counter} fails authentication)"
    )


def _read_exact(handle: BinaryIO, size: int, name: str) -> bytes:
    """Read up to `size` bytes, fewer only at the end of the file."""
    parts: list[bytes] = []
    remaining = size
    try:
        while remaining:
            part = handle.read(remaining)
            if not part:
                break
            parts.append(part)
            remaining -= len(part)
    except OSError as exc:
        raise StorageError(f"cannot read {name}: {exc.strerror or exc}") from exc
    return b"".join(parts)
