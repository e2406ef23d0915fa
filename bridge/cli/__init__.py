"""The command line: the one place where an error becomes a line of text and an exit code.

Exit codes: 0 success; 1 the input is invalid (defects, failed verification); 2 usage or configuration error;
3 the broker or storage failed.
"""

from __future__ import annotations

import argparse
import importlib
import os
import sys
from collections.abc import Callable, Sequence
from types import ModuleType

from bridge import __version__
from bridge.errors import BridgeError, BrokerError, CatalogueError, ConfigError, FlowDefinitionError, StorageError

EXIT_OK = 0
EXIT_INVALID = 1
EXIT_USAGE = 2
EXIT_FAILURE = 3

Command = Callable[[argparse.Namespace], int]


def build_parser() -> argparse.ArgumentParser:
    """Every command module adds its subcommands through its `register(subparsers)`."""
    parser = argparse.ArgumentParser(prog="dtn-bridge", description="DTN flow files <-> signed CloudEvents")
    parser.add_argument("--version", action="version", version=f"dtn-bridge {__version__}")
    subparsers = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for module in _command_modules():
        module.register(subparsers)
    return parser


def _command_modules() -> list[ModuleType]:
    modules: list[ModuleType] = []
    for name in ("flows", "definitions", "signing", "daemon", "rules", "operations", "broker"):
        try:
            modules.append(importlib.import_module(f"bridge.cli.{name}"))
        except ModuleNotFoundError as exc:
            if exc.name != f"bridge.cli.{name}":
                raise
    return modules


def main(argv: Sequence[str] | None = None) -> int:
    """Run one command; print one clear line per error on stderr, never a traceback."""
    parser = build_parser()
    args = parser.parse_args(argv)
    command: Command = args.run
    try:
        return command(args)
    except (ConfigError, FlowDefinitionError, CatalogueError) as exc:
        print(f"dtn-bridge: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except (BrokerError, StorageError) as exc:
        print(f"dtn-bridge: {exc}", file=sys.stderr)
        return EXIT_FAILURE
    except BridgeError as exc:
        print(f"dtn-bridge: {exc}", file=sys.stderr)
        return EXIT_INVALID
    except BrokenPipeError:
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())  # the reader went away (| head): not an error
        return EXIT_OK
    except OSError as exc:
        print(f"dtn-bridge: {exc.filename or ''}: {exc.strerror or exc}", file=sys.stderr)
        return EXIT_FAILURE
    except KeyboardInterrupt:
        return 130
