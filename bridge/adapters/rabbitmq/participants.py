"""The participants file of `dtn-bridge broker definitions`: who gets a broker user, how it logs in, which
broadcast flows it may bind. Validated like the configuration (bridge/schema.py: errors name the dotted key and the
file); passwords are read from their files and leave this module only as RabbitMQ password hashes.

    participants:
      - id: ABCD                                      # MPID
        user: abcd                                    # default: the MPID in lower case
        password_file: /etc/dtn-bridge/abcd.password  # absent: certificate login (EXTERNAL, user = the cert's CN)
        broadcasts: [D0269]                           # absent: every broadcast flow; []: none
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable, Collection
from pathlib import Path

import yaml

from bridge.adapters.rabbitmq.definitions import ParticipantAccess, password_hash
from bridge.dtn.definitions import FLOW_SELECTOR
from bridge.errors import ConfigError
from bridge.rules.parse import select_flows
from bridge.schema import Node, describe_value

_MPID = re.compile(r"[A-Z0-9]{4}")
_USER = re.compile(r"[^\x00-\x1f\x7f]{1,255}")


def load_participants(path: str | os.PathLike[str], known_flows: Collection[str], *,
                      salt: Callable[[], bytes] = lambda: os.urandom(4)) -> list[ParticipantAccess]:
    """Read and validate a participants file; `known_flows` are the loaded flow references (D0010002, ...)."""
    file = Path(path).expanduser().absolute()
    source = str(file)
    try:
        data = yaml.safe_load(file.read_text(encoding="utf-8"))
    except OSError as exc:
        raise ConfigError("(file)", f"cannot read: {exc.strerror or exc}", source) from exc
    except (UnicodeDecodeError, yaml.YAMLError) as exc:
        raise ConfigError("(yaml)", f"not a YAML file: {exc}", source) from exc
    return parse_participants(data, base_dir=file.parent, source=source, known_flows=known_flows, salt=salt)


def parse_participants(data: object, *, base_dir: Path, source: str | None, known_flows: Collection[str],
                       salt: Callable[[], bytes] = lambda: os.urandom(4)) -> list[ParticipantAccess]:
    """Validate an already-parsed participants mapping; relative password files resolve against `base_dir`."""
    root = Node("", data, source, base_dir)
    root.check_keys({"participants"})
    entries = root.sequence("participants")
    if not entries:
        raise root.error("participants", "names no participant")
    found: list[ParticipantAccess] = []
    ids: set[str] = set()
    users: set[str] = set()
    for index, entry in enumerate(entries):
        node = Node(f"participants[{index}]", entry, source, base_dir)
        node.check_keys({"id", "user", "password_file", "broadcasts"})
        mpid = node.string("id", pattern=_MPID, hint="an MPID (4 upper-case letters or digits)")
        if mpid in ids:
            raise node.error("id", f"{mpid} is listed twice")
        user = node.string("user", mpid.lower(), pattern=_USER, hint="a broker user name (no control characters)")
        if user in users:
            raise node.error("user", f"{user!r} is the user of another participant")
        ids.add(mpid)
        users.add(user)
        hashed: str | None = None
        password_file = node.path("password_file", None)
        if password_file is not None:
            hashed = password_hash(_read_password(node, password_file), salt())
        broadcasts: frozenset[str] | None = None
        if node.raw("broadcasts") is not None:
            if not isinstance(node.raw("broadcasts"), list):
                raise node.error("broadcasts", f"expected a list of flows (absent: every broadcast flow), got "
                                               f"{describe_value(node.raw('broadcasts'))}")
            selectors = node.strings("broadcasts", pattern=FLOW_SELECTOR, hint="a flow like D0269 or D0269001")
            for position, selector in enumerate(selectors):
                select_flows(node, selector, known_flows, key=f"broadcasts[{position}]")
            broadcasts = frozenset(selectors)
        found.append(ParticipantAccess(mpid, user, hashed, broadcasts))
    return found


def _read_password(node: Node, path: Path) -> str:
    """The file's text without its final line end; never echoed in an error."""
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise node.error("password_file", f"cannot read {path}: {exc.strerror or exc}") from exc
    except UnicodeDecodeError as exc:
        raise node.error("password_file", f"{path} is not UTF-8 text") from exc
    password = text.removesuffix("\n").removesuffix("\r")
    if not password:
        raise node.error("password_file", f"{path} holds no password")
    if "\n" in password or "\r" in password:
        raise node.error("password_file", f"{path} holds more than one line")
    return password
