"""Issue 15: events carry `dataschema`; the outbound check takes events with it and without it (events stored
before it was added must still replay and verify), and refuses one naming another schema than its type's."""

from __future__ import annotations

from typing import Any

import orjson
import pytest

from bridge.dtn.reader import FlowFileReader
from bridge.events.manifest import MANIFEST_SCHEMA, MANIFEST_TYPE
from bridge.outbound import CheckedEvent, EventRejected, ManifestNotice, MessageChecker
from bridge.signing import Signer
from tests.conftest import EXAMPLES
from tests.outbound.outbound_helpers import source_file


def check(checker: MessageChecker, signer: Signer, event: dict[str, Any]) -> CheckedEvent | ManifestNotice:
    return checker.check_or_raise(orjson.dumps(signer.sign(event)))


def test_with_and_without_dataschema(checker: MessageChecker, signer: Signer, reader: FlowFileReader) -> None:
    """A new event (with dataschema) and an old one (signed without it) both pass, flow events and manifests."""
    made = source_file(EXAMPLES / "D0030001.txt", reader)
    event, manifest = made.events[0], made.manifest
    assert event["dataschema"] == "urn:dtn-bridge:schema:D0030001"
    assert (manifest["type"], manifest["dataschema"]) == (MANIFEST_TYPE, MANIFEST_SCHEMA)
    old_event = {name: value for name, value in event.items() if name != "dataschema"}
    old_manifest = {name: value for name, value in manifest.items() if name != "dataschema"}
    old_manifest["type"] = "uk.dtc.file.received"  # the type before it was versioned
    for current, old in ((event, old_event), (manifest, old_manifest)):
        assert isinstance(check(checker, signer, current), type(check(checker, signer, old)))
    assert isinstance(check(checker, signer, old_manifest), ManifestNotice)


@pytest.mark.parametrize("named", ["urn:dtn-bridge:schema:D0010002", "https://example.org/x.json", 7])
def test_another_schema_is_refused(checker: MessageChecker, signer: Signer, reader: FlowFileReader,
                                   named: object) -> None:
    made = source_file(EXAMPLES / "D0030001.txt", reader)
    for event in (made.events[0], made.manifest):
        with pytest.raises(EventRejected) as refused:
            check(checker, signer, event | {"dataschema": named})
        assert refused.value.code == "schema_invalid" and "dataschema" in str(refused.value)
