"""`dtn-bridge keys generate|show`, `dtn-bridge sign` and `dtn-bridge verify`: NDJSON in, NDJSON/report out.

Streams line by line so memory does not grow with the input. Key problems are configuration errors (exit 2);
an event that cannot be signed or does not verify is invalid input (exit 1). Never prints key material.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import IO, Any

import orjson

from bridge.cli.progress import input_file
from bridge.errors import SignatureError
from bridge.signing.certs import load_ca_bundle
from bridge.signing.jws import ALG_EDDSA, ALG_ES256, DEFAULT_ALGORITHM
from bridge.signing.keys import (
    algorithm_for,
    read_private_key,
    thumbprint,
    write_private_key,
)
from bridge.signing.reasons import CONFIG_REASONS, INVALID_KEY, MALFORMED
from bridge.signing.signer import Signer
from bridge.signing.trust import TrustStore, trusted_key_from_jwk

EXIT_OK = 0
EXIT_INVALID = 1
EXIT_USAGE = 2


def register(subparsers: Any) -> None:
    """Add `keys`, `sign` and `verify` to the dtn-bridge command line."""
    keys = subparsers.add_parser("keys", help="generate or inspect signing keys")
    key_commands = keys.add_subparsers(dest="keys_command", required=True, metavar="KEYS_COMMAND")

    generate = key_commands.add_parser("generate", help="write a new private key (0600) and its public JWKS")
    generate.add_argument("--out", required=True, type=Path, help="directory to write into")
    generate.add_argument("--alg", choices=(ALG_ES256, ALG_EDDSA), default=DEFAULT_ALGORITHM,
                          help=f"ES256 (P-256, verifiable everywhere, .NET included) or EdDSA (Ed25519); "
                               f"default: {DEFAULT_ALGORITHM}")
    generate.add_argument("--participant", metavar="MPID", help="bind the public key to this participant")
    generate.add_argument("--name", default="signing", help="file name stem (default: signing)")
    generate.set_defaults(run=run_keys_generate)

    show = key_commands.add_parser("show", help="print kid, alg and participant of a key or a JWKS")
    source = show.add_mutually_exclusive_group(required=True)
    source.add_argument("--key", type=Path, help="a PEM private key")
    source.add_argument("--jwks", type=Path, help="a JWKS file")
    show.set_defaults(run=run_keys_show)

    sign = subparsers.add_parser("sign", help="add a signature to each event of an NDJSON stream")
    sign.add_argument("--key", required=True, type=Path, help="PEM private key (mode 0600)")
    sign.add_argument("--participant", metavar="MPID", help="refuse events whose source is not urn:mpid:MPID")
    sign.add_argument(
        "--cert", type=Path, help="PEM certificate chain (leaf first) for the key: adds x5t#S256"
    )
    sign.add_argument(
        "--embed-x5c", action="store_true", help="also put the certificate chain in each header"
    )
    sign.add_argument("input", nargs="?", default="-", type=input_file, help="NDJSON file, or - for stdin (default)")
    sign.add_argument("-o", "--output", default="-", help="output file, or - for stdout (default)")
    sign.set_defaults(run=run_sign)

    verify = subparsers.add_parser("verify", help="verify the signature of each event of an NDJSON stream")
    verify.add_argument("--trust", required=True, type=Path, help="JWKS of trusted public keys")
    verify.add_argument("--ca", type=Path, help="PEM CA bundle for keys presented with an x5c chain")
    verify.add_argument("input", nargs="?", default="-", type=input_file,
                        help="NDJSON file, or - for stdin (default)")
    verify.set_defaults(run=run_verify)


# --------------------------------------------------------------------------------------------------- keys


def run_keys_generate(args: argparse.Namespace) -> int:
    """Write NAME.key.pem (created 0600, never overwritten) and NAME.jwks.json."""
    try:
        signer = Signer.generate(args.alg, participant=args.participant)
    except SignatureError as exc:
        return _config_error(exc)
    out: Path = args.out
    out.mkdir(parents=True, exist_ok=True)
    key_path = out / f"{args.name}.key.pem"
    jwks_path = out / f"{args.name}.jwks.json"
    for path in (key_path, jwks_path):
        if path.exists():
            print(f"dtn-bridge: {path}: already exists; refusing to overwrite", file=sys.stderr)
            return EXIT_USAGE
    write_private_key(key_path, signer.private_key)
    with open(jwks_path, "xb") as handle:
        handle.write(orjson.dumps(signer.public_jwks(), option=orjson.OPT_INDENT_2) + b"\n")
    print(f"kid: {signer.kid}")
    print(f"alg: {signer.alg}")
    print(f"participant: {signer.participant or '-'}")
    print(f"private key: {key_path}")
    print(f"public JWKS: {jwks_path}")
    return EXIT_OK


def run_keys_show(args: argparse.Namespace) -> int:
    """Print one line per key: kid, alg, participant. Public information only."""
    if args.key is not None:
        try:
            key = read_private_key(args.key, check_permissions=False)
        except SignatureError as exc:
            return _config_error(exc)
        public_key = key.public_key()
        print(f"kid={thumbprint(public_key)} alg={algorithm_for(public_key)} participant=-")
        return EXIT_OK
    try:
        document = orjson.loads(args.jwks.read_bytes())
    except orjson.JSONDecodeError as exc:
        print(f"dtn-bridge: {args.jwks}: not JSON: {exc}", file=sys.stderr)
        return EXIT_USAGE
    if not isinstance(document, dict) or not isinstance(document.get("keys"), list):
        print(f"dtn-bridge: {args.jwks}: not a JWKS (no 'keys' array)", file=sys.stderr)
        return EXIT_USAGE
    status = EXIT_OK
    for index, jwk in enumerate(document["keys"]):
        try:
            trusted = trusted_key_from_jwk(jwk)
        except SignatureError as exc:
            print(f"dtn-bridge: {args.jwks}: keys[{index}]: {exc}", file=sys.stderr)
            status = EXIT_USAGE
            continue
        line = f"kid={trusted.kid} alg={trusted.alg} participant={trusted.participant or '-'}"
        if trusted.chain:
            line += f" certificate={trusted.chain[0].subject.rfc4514_string()}"
        print(line)
    return status


# --------------------------------------------------------------------------------------------------- sign


def run_sign(args: argparse.Namespace) -> int:
    """Sign each line; a line that cannot be signed is reported and left out, and the exit code is 1.

    With -o the output file only appears if every event was signed (written to a temporary file, then renamed).
    """
    try:
        chain = _read_chain(args.cert) if args.cert is not None else None
        signer = Signer.from_key_file(
            args.key, participant=args.participant, certificate_chain=chain, embed_x5c=args.embed_x5c
        )
    except SignatureError as exc:
        return _config_error(exc)
    failed = 0
    signed = 0
    with _open_input(args.input) as source, _open_output(args.output) as (sink, commit):
        for number, line in _lines(source):
            try:
                event = _parse_line(line)
                out = signer.sign(event)
            except SignatureError as exc:
                failed += 1
                _report(number, _event_id(line), exc)
                continue
            sink.write(orjson.dumps(out) + b"\n")
            signed += 1
        if not failed:
            commit()
    print(f"signed {signed} event(s), {failed} failed", file=sys.stderr)
    return EXIT_INVALID if failed else EXIT_OK


def _read_chain(path: Path) -> list[Any]:
    try:
        return load_ca_bundle(path.read_bytes())
    except SignatureError:
        raise SignatureError(INVALID_KEY, f"{path}: not a PEM certificate chain") from None


# ------------------------------------------------------------------------------------------------- verify


def run_verify(args: argparse.Namespace) -> int:
    """Verify each line; name every failing event (line, id, reason) on stderr; summary on stdout."""
    trust = TrustStore.from_jwks_file(args.trust, ca_bundle=args.ca)  # ConfigError -> exit 2 in bridge.cli
    valid = 0
    invalid = 0
    with _open_input(args.input) as source:
        for number, line in _lines(source):
            try:
                trust.verify(_parse_line(line))
            except SignatureError as exc:
                invalid += 1
                _report(number, _event_id(line), exc)
                continue
            valid += 1
    print(f"verified {valid + invalid} event(s): {valid} valid, {invalid} invalid")
    return EXIT_INVALID if invalid else EXIT_OK


# ------------------------------------------------------------------------------------------------ helpers


def _config_error(exc: SignatureError) -> int:
    print(f"dtn-bridge: {exc}", file=sys.stderr)
    return EXIT_USAGE if exc.reason in CONFIG_REASONS else EXIT_INVALID


def _report(number: int, event_id: str, exc: SignatureError) -> None:
    print(f"line {number}: id={event_id}: {exc.reason}: {exc}", file=sys.stderr)


def _parse_line(line: bytes) -> dict[str, Any]:
    try:
        event = orjson.loads(line)
    except orjson.JSONDecodeError as exc:
        raise SignatureError(MALFORMED, f"not JSON: {exc}") from None
    if not isinstance(event, dict):
        raise SignatureError(MALFORMED, "not a JSON object")
    return event


def _event_id(line: bytes) -> str:
    """The event id for messages, or '-' when the line is not an object with a string id."""
    try:
        event = orjson.loads(line)
    except orjson.JSONDecodeError:
        return "-"
    event_id = event.get("id") if isinstance(event, dict) else None
    return event_id if isinstance(event_id, str) else "-"


def _lines(source: IO[bytes]) -> Iterator[tuple[int, bytes]]:
    """Non-blank lines with their 1-based numbers; one line in memory at a time."""
    for number, line in enumerate(source, start=1):
        if line.strip():
            yield number, line


@contextlib.contextmanager
def _open_input(name: str | Path) -> Iterator[IO[bytes]]:
    if str(name) == "-":
        yield sys.stdin.buffer
        return
    with open(name, "rb") as handle:
        yield handle


@contextlib.contextmanager
def _open_output(name: str) -> Iterator[tuple[IO[bytes], Any]]:
    """Yields (stream, commit). For a file, output goes to NAME.tmp and commit() renames it into place."""
    if name == "-":
        yield sys.stdout.buffer, lambda: None
        sys.stdout.buffer.flush()
        return
    target = Path(name)
    temporary = target.with_name(f".{target.name}.tmp")
    committed = False

    def commit() -> None:
        nonlocal committed
        committed = True

    try:
        with open(temporary, "wb") as handle:
            yield handle, commit
        if committed:
            os.replace(temporary, target)
    finally:
        if temporary.exists():
            temporary.unlink()
