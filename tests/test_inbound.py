"""The inbound chain's pure logic with a fake publisher (the real broker is in tests/e2e): what a file that changes
under the bridge between the check and the publish comes to."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from bridge.adapters.ledger import Ledger
from bridge.adapters.rabbitmq import OutgoingMessage, PublishResult
from bridge.adapters.spool import Spool
from bridge.dtn.definitions import DefinitionSet
from bridge.dtn.reader import FlowFileReader
from bridge.inbound import InboundPipeline
from bridge.rules.parse import parse_rules
from bridge.signing import Signer
from tests.conftest import EXAMPLES


class RewritingPublisher:
    """Takes the messages; before its first batch, rewrites the file being published (a writer that kept it open)."""

    def __init__(self, path_of: Any) -> None:
        self.path_of = path_of
        self.taken: list[OutgoingMessage] = []
        self.rewrites = 0

    def publish_all(self, messages: Any, timeout: float = 60.0) -> PublishResult:
        if self.rewrites == 0:
            path: Path = self.path_of()
            path.write_bytes(path.read_bytes().replace(b"|3897788.8|", b"|3897788.9|", 1))
            self.rewrites += 1
        batch = list(messages)
        self.taken += batch
        return PublishResult(len(batch), len(batch))


def test_file_changed_between_the_passes_is_quarantined(tmp_path: Path, definitions: DefinitionSet) -> None:
    folders = {name: tmp_path / name for name in ("inbound", "processing", "archive", "quarantine")}
    for folder in folders.values():
        folder.mkdir()
    spool = Spool(folders["processing"], folders["archive"], folders["quarantine"])
    (folders["inbound"] / "D0010002.txt").write_bytes((EXAMPLES / "D0010002.txt").read_bytes())
    claim = spool.claim(folders["inbound"] / "D0010002.txt")
    assert claim is not None
    publisher = RewritingPublisher(lambda: claim.path)
    signer = Signer.generate()
    pipeline = InboundPipeline(
        reader=FlowFileReader(definitions), sign=signer.sign_to_json, publisher=publisher,
        ledger=Ledger(tmp_path / "ledger.db"), spool=spool,
        rules=parse_rules(None, participant_id="SYNB", participant_role="X", definitions=definitions))
    outcome = pipeline.process(claim)
    assert outcome.outcome == "quarantined" and outcome.rule == "file-changed"
    assert "changed between the passes" in (outcome.reason or "")
    report = json.loads(outcome.final_path.with_name(outcome.final_path.name + ".error.json").read_text())
    assert report["defects"][0]["rule"] == "file-changed"
    assert not list(folders["archive"].rglob("*.txt"))
