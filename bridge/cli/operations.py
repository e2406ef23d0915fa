"""`dtn-bridge archive ...`: operator commands for the archive and quarantine when they are encrypted at rest.

    dtn-bridge archive keygen --out /etc/dtn-bridge/spool.key       # a new key file, mode 0600
    dtn-bridge archive cat --config bridge.yaml var/archive/2024/05/06/D0010002.usr.enc > D0010002.usr

`cat` prints plaintext files unchanged, so it works the same before and after encryption was switched on. It
streams: every 64 KiB chunk is authenticated before it is written, but a truncated file is only noticed at its
end; then the command fails (exit 3) after printing what it had, so check the exit status before trusting output.
"""

from __future__ import annotations

import argparse
import sys
from contextlib import ExitStack
from pathlib import Path
from typing import Any

from bridge.adapters.encryption import FileCipher, generate_key_file, is_encrypted, key_id, spool_cipher
from bridge.cli.progress import input_file, is_stdin, spooled_stdin
from bridge.config import load_config
from bridge.errors import StorageError

EXIT_OK = 0
_COPY_CHUNK = 1 << 16


def register(subparsers: Any) -> None:
    """Add `archive cat` and `archive keygen`."""
    archive = subparsers.add_parser("archive", help="archive and quarantine files (encryption at rest)")
    commands = archive.add_subparsers(dest="archive_command", required=True, metavar="COMMAND")

    cat = commands.add_parser("cat", help="print an archived or quarantined file (decrypted if encrypted)")
    cat.add_argument(
        "--config",
        type=Path,
        required=True,
        metavar="FILE",
        help="the bridge configuration (for spool.encryption_key and encryption_keys_old)",
    )
    cat.add_argument(
        "path", type=input_file, metavar="PATH", help="an archived or quarantined file (.enc or plain), '-' for stdin"
    )
    cat.set_defaults(run=run_cat)

    keygen = commands.add_parser("keygen", help="write a new random AES-256 key file with mode 0600")
    keygen.add_argument("--out", type=Path, required=True, metavar="FILE", help="the key file to create")
    keygen.set_defaults(run=run_keygen)


def run_cat(args: argparse.Namespace) -> int:
    """Stream the file's plaintext to stdout; the key is only needed (and only read) for encrypted files."""
    config = load_config(args.config)
    with ExitStack() as stack:  # stdin: copied to a temporary file first (the encrypted format is read by path)
        path: Path = stack.enter_context(spooled_stdin()) if is_stdin(args.path) else args.path
        _cat(config, path)
    return EXIT_OK


def _cat(config: Any, path: Path) -> None:
    out = sys.stdout.buffer
    if is_encrypted(path):
        cipher: FileCipher | None = spool_cipher(config.spool)
        if cipher is None:
            raise StorageError(f"{path} is encrypted but {config.source}: spool.encryption_key is not set")
        for chunk in cipher.decrypt_stream(path):
            out.write(chunk)
    else:
        try:
            with path.open("rb") as source:
                while chunk := source.read(_COPY_CHUNK):
                    out.write(chunk)
        except OSError as exc:
            raise StorageError(f"cannot read {path}: {exc.strerror or exc}") from exc
    out.flush()


def run_keygen(args: argparse.Namespace) -> int:
    """Create the key file (never overwriting one: files encrypted with it would be lost) and name its id."""
    key = generate_key_file(args.out)
    print(
        f"wrote {args.out} (mode 0600, key id {key_id(key).hex()}); keep a copy apart from the archive backups"
    )
    return EXIT_OK
