"""The participants file: validated like the configuration (errors name the dotted key and the file), passwords read
from their files and turned into hashes at once, never echoed."""

from __future__ import annotations

import base64
import hashlib
from pathlib import Path
from typing import Any

import pytest
import yaml

from bridge.adapters.rabbitmq.definitions import ParticipantAccess
from bridge.adapters.rabbitmq.participants import load_participants
from bridge.errors import ConfigError

FLOWS = ["D0010002", "D0269002", "D0269004", "D0270004"]
SALT = b"\x00\x01\x02\x03"


def load(tmp_path: Path, document: Any) -> list[ParticipantAccess]:
    path = tmp_path / "participants.yaml"
    path.write_text(yaml.safe_dump(document))
    return load_participants(path, FLOWS, salt=lambda: SALT)


def test_defaults_and_password_files(tmp_path: Path) -> None:
    (tmp_path / "abcd.password").write_text("correct horse\n")
    found = load(tmp_path, {"participants": [
        {"id": "ABCD", "password_file": "abcd.password"},  # relative to the participants file
        {"id": "EF01", "user": "CN=ef01,O=Example", "broadcasts": ["D0269", "D0270004"]},
        {"id": "GHIJ", "broadcasts": []}]})
    assert found == [
        ParticipantAccess("ABCD", "abcd", base64.b64encode(SALT + hashlib.sha256(SALT + b"correct horse").digest())
                          .decode(), None),
        ParticipantAccess("EF01", "CN=ef01,O=Example", None, frozenset({"D0269", "D0270004"})),
        ParticipantAccess("GHIJ", "ghij", None, frozenset())]


@pytest.mark.parametrize(("document", "key", "words"), [
    ({}, "participants", "names no participant"),
    ({"participants": [{"id": "abcd"}]}, "participants[0].id", "not an MPID"),
    ({"participants": [{"id": "ABCDE"}]}, "participants[0].id", "not an MPID"),
    ({"participants": [{}]}, "participants[0].id", "is required"),
    ({"participants": [{"id": "ABCD"}, {"id": "ABCD", "user": "x"}]}, "participants[1].id", "listed twice"),
    ({"participants": [{"id": "ABCD"}, {"id": "EFGH", "user": "abcd"}]}, "participants[1].user",
     "user of another"),
    ({"participants": [{"id": "ABCD", "pasword_file": "x"}]}, "participants[0].pasword_file", "password_file"),
    ({"participants": [{"id": "ABCD", "password_file": "missing.password"}]}, "participants[0].password_file",
     "cannot read"),
    ({"participants": [{"id": "ABCD", "broadcasts": "D0269"}]}, "participants[0].broadcasts", "expected a list"),
    ({"participants": [{"id": "ABCD", "broadcasts": ["D9999"]}]}, "participants[0].broadcasts[0]",
     "names no loaded flow"),
    ({"participants": [{"id": "ABCD", "broadcasts": ["d0269"]}]}, "participants[0].broadcasts[0]", "not a flow"),
    ({"participants": "ABCD"}, "participants", "expected a list"),
    ({"people": []}, "people", "unknown key"),
])
def test_errors_name_the_key(tmp_path: Path, document: Any, key: str, words: str) -> None:
    with pytest.raises(ConfigError) as caught:
        load(tmp_path, document)
    assert caught.value.key == key and words in caught.value.message, caught.value
    assert str(caught.value).startswith(f"{tmp_path / 'participants.yaml'}: {key}: ")


@pytest.mark.parametrize(("text", "words"), [("", "holds no password"), ("\n", "holds no password"),
                                             ("pw-1\npw-2\n", "more than one line")])
def test_bad_password_files_are_named_never_quoted(tmp_path: Path, text: str, words: str) -> None:
    (tmp_path / "p.password").write_text(text)
    with pytest.raises(ConfigError) as caught:
        load(tmp_path, {"participants": [{"id": "ABCD", "password_file": "p.password"}]})
    assert caught.value.key == "participants[0].password_file" and words in caught.value.message
    assert "pw-" not in str(caught.value)


def test_unreadable_files(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="cannot read"):
        load_participants(tmp_path / "missing.yaml", FLOWS)
    (tmp_path / "bad.yaml").write_text("participants: [")
    with pytest.raises(ConfigError, match="not a YAML file"):
        load_participants(tmp_path / "bad.yaml", FLOWS)
