"""`dtn-bridge broker definitions` through bridge.cli.main: the document from a configuration and a participants
file, written with mode 0600; errors are one line naming the key, exit 2."""

from __future__ import annotations

import json
import stat
from pathlib import Path

import pytest

from bridge.cli import main
from tests.conftest import REPO


def write(tmp_path: Path, rules: object = None, participants: object = None) -> tuple[Path, Path]:
    config = {"participant": {"id": "MRCY", "role": "X"}, "flows": {"definitions": str(REPO / "flow_definitions")},
              "broker": {"urls": ["amqp://bridge:pw@rabbit.example:5672/dtn"], "topology_suffix": ".a"}}
    if rules is not None:
        config["rules"] = rules
    (tmp_path / "bridge.yaml").write_text(json.dumps(config))
    (tmp_path / "abcd.password").write_text("hunter2\n")
    document = participants if participants is not None else {"participants": [
        {"id": "ABCD", "password_file": "abcd.password"}, {"id": "EFGH", "broadcasts": ["D0269"]}]}
    (tmp_path / "participants.yaml").write_text(json.dumps(document))
    return tmp_path / "bridge.yaml", tmp_path / "participants.yaml"


def test_prints_the_document(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    config, participants = write(tmp_path, rules={
        "subscribers": [{"name": "readings", "routing_key_prefix": "minimised.readings", "flows": ["D0010"]}],
        "test_data": {"action": "reject"}})
    assert main(["broker", "definitions", "--config", str(config), "--participants", str(participants)]) == 0
    out = capsys.readouterr().out
    document = json.loads(out)
    assert "hunter2" not in out and "pw" not in json.dumps(document["users"])
    assert [user["name"] for user in document["users"]] == ["abcd", "efgh"]
    assert document["vhosts"] == [{"name": "dtn"}]
    assert [e["name"] for e in document["exchanges"]] == ["dtn.dead-letter.a", "dtn.events.a"]
    read = document["topic_permissions"][0]["read"]
    assert "minimised\\.readings" in read and "test" not in read  # test traffic is rejected: no test keys


def test_writes_a_private_file(tmp_path: Path) -> None:
    config, participants = write(tmp_path)
    out = tmp_path / "definitions.json"
    out.write_text("old")
    out.chmod(0o644)
    assert main(["broker", "definitions", "--config", str(config), "--participants", str(participants),
                 "-o", str(out)]) == 0
    assert stat.S_IMODE(out.stat().st_mode) == 0o600
    assert json.loads(out.read_text())["topic_permissions"][1]["user"] == "efgh"


@pytest.mark.parametrize(("rules", "participants", "words"), [
    (None, {"participants": [{"id": "abcd"}]}, "participants[0].id: 'abcd' is not an MPID"),
    ({"broadcast": {"flows": ["D9999"]}}, None, "rules.broadcast.flows[0]: 'D9999' names no loaded flow"),
])
def test_errors_are_one_line(tmp_path: Path, capsys: pytest.CaptureFixture[str], rules: object,
                             participants: object, words: str) -> None:
    config, path = write(tmp_path, rules, participants)
    assert main(["broker", "definitions", "--config", str(config), "--participants", str(path)]) == 2
    err = capsys.readouterr().err
    assert words in err and err.count("\n") == 1, err
