"""Issue 14's property: hostile but well-signed envelopes (random attribute values, sizes, control characters, path
parts) through the outbound check and writer. Whatever they hold, the check answers with a value, the writer refuses
with one of the two errors the loop settles (EventRejected: dead-letter; EventError: write the events as a new
batch), nothing is written outside the outbound folder, every file written reads back valid, and the honest event
behind each hostile one is written."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path
from typing import Any

import orjson
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from bridge.adapters.ledger import Ledger
from bridge.adapters.spool import FolderOutbox
from bridge.config import OutboundConfig
from bridge.dtn.definitions import load_definitions
from bridge.dtn.reader import FlowFileReader
from bridge.errors import EventError
from bridge.inbound.flowfile import check_file
from bridge.outbound import CheckedEvent, EventRejected, MessageChecker, OutboundWriter, Rejection
from bridge.signing import Signer, TrustStore
from tests.conftest import EXAMPLES, REPO
from tests.outbound.outbound_helpers import numbered_events, source_file
from tests.outbound.test_outbound_writer import ready

SOAK = os.environ.get("DTN_SOAK", "") not in ("", "0")
DEFINITIONS = load_definitions(REPO / "flow_definitions")
READER = FlowFileReader(DEFINITIONS)
SIGNER = Signer.generate()
CHECKER = MessageChecker(DEFINITIONS, TrustStore.from_jwks(SIGNER.public_jwks()))
TEMPLATE = source_file(EXAMPLES / "D0010002.txt", READER).events[0]
ORIGINAL = TEMPLATE | {"dtcindex": 1, "dtcflowcount": 1}  # a whole source file of one instance
ATTRIBUTES = ["dtcfileid", "dtcfrom", "dtcto", "dtcfromrole", "dtctorole", "dtccreated", "dtccompleted",
              "dtcchecksum", "dtctestflag", "dtcsendapp", "dtcrecvapp", "dtcbroadcast", "dtcenvelope", "dtcindex",
              "dtcflowcount", "source", "type"]
PATHS = ["..", ".", "../../escaped", "/tmp/escaped", "a/b", "a\\b", "x" * 300, "\x00", "a\x00b", "~x", "", " ",
         "ZPT|1", "A\nZHV", "A\r", "\u2028", "OPER", "SYNA", "urn:mpid:../x", "urn:mpid:EVIL", "X",
         "20240101120000", "ZHD-POOL", "ZHV+nopipe"]
TEXT = st.one_of(st.sampled_from(PATHS), st.text(max_size=24),
                 st.text(st.characters(max_codepoint=0x7F), min_size=1, max_size=12))
VALUES = st.one_of(TEXT, st.integers(-2, 2**40), st.none(), st.booleans(), st.lists(st.integers(0, 3), max_size=2))
HOSTILE = st.tuples(st.sampled_from(["original", "new"]),
                    st.dictionaries(st.sampled_from(ATTRIBUTES), VALUES, min_size=1, max_size=4))


def _settle(writer: OutboundWriter, item: CheckedEvent) -> None:
    """What the loop does with one verified event alone: its source file when it is whole, else a new file; an
    original the writer refuses goes to a batch, as `Batcher.divert` sends it."""
    if item.origin is not None and item.origin.flow_count == 1:
        try:
            writer.write(ready("original", [item]))
            return
        except EventError as exc:
            if isinstance(exc, EventRejected):
                return
    if item.batch_key is not None:
        try:
            writer.write(ready("batch", [item]))
        except EventRejected:
            pass


@settings(max_examples=2_000 if SOAK else 200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(cases=st.lists(HOSTILE, min_size=1, max_size=3), name_pattern=st.sampled_from(
    ["{flow}{version}_{from_participant}_{file_identifier}.usr", "{file_identifier}.usr", "{file_identifier}"]))
def test_hostile_envelopes_never_escape_break_or_block(cases: list[tuple[str, dict[str, Any]]],
                                                      name_pattern: str) -> None:
    with tempfile.TemporaryDirectory() as root:
        top = Path(root)
        folder = top / "outbound"
        folder.mkdir()
        with Ledger(top / "ledger.sqlite3") as ledger:
            writer = OutboundWriter(DEFINITIONS, ledger, OutboundConfig(folder=folder, name_pattern=name_pattern),
                                    outbox=FolderOutbox(folder))
            for number, (base, overrides) in enumerate(cases):
                hostile = (ORIGINAL if base == "original" else numbered_events(TEMPLATE, 1, start=900)[0]) | overrides
                hostile["id"] = f"hostile-{number}"
                checked = CHECKER.check(orjson.dumps(SIGNER.sign(hostile)))  # never raises: a value
                if isinstance(checked.outcome, CheckedEvent):
                    _settle(writer, checked.outcome)
                else:
                    assert isinstance(checked.outcome, Rejection)
                [honest] = numbered_events(TEMPLATE, 1, start=number)
                item = CHECKER.check(orjson.dumps(SIGNER.sign(honest))).outcome
                assert isinstance(item, CheckedEvent)
                assert writer.write(ready("batch", [item])) is not None, "the honest event behind was not written"
            writer.recover()  # nothing left pending, and nothing it cannot settle
            assert ledger.pending_outbound_files() == []
        outside = sorted(str(p.relative_to(top)) for p in top.rglob("*")
                         if p.parent != folder and p != folder and not p.name.startswith("ledger.sqlite3"))
        assert outside == []
        for path in folder.iterdir():
            assert not path.name.startswith("."), f"a temporary file was left: {path.name!r}"
            assert check_file(path, READER).ok, f"{path.name!r} does not read back valid"
