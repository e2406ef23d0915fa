"""Verification (stage 1) and the write protocol without a broker: codes, file layout, counters, names, recovery."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import orjson
import pytest

from bridge.adapters.ledger import Ledger, OutboundFileDraft
from bridge.adapters.spool import FolderOutbox
from bridge.config import OutboundConfig
from bridge.dtn.definitions import DefinitionSet
from bridge.dtn.reader import FlowFileReader
from bridge.inbound.flowfile import check_file
from bridge.outbound import (
    CheckedEvent,
    EventRejected,
    Held,
    ManifestNotice,
    MessageChecker,
    OutboundWriter,
    ReadyFile,
    Rejection,
)
from bridge.ports import Delivery
from bridge.rules import parse_rules
from bridge.signing import Signer, TrustStore
from tests.conftest import EXAMPLES
from tests.outbound.outbound_helpers import (
    FakeClock,
    key,
    new_event,
    numbered_events,
    source_file,
    visible_files,
)

SYNA = "urn:mpid:SYNA"


@pytest.fixture
def writer(definitions: DefinitionSet, ledger: Ledger, config: OutboundConfig, clock: FakeClock) -> OutboundWriter:
    return OutboundWriter(definitions, ledger, config, outbox=FolderOutbox(config.folder, config.file_mode),
                          clock=clock)


def verified(checker: MessageChecker, signer: Signer, events: list[dict[str, Any]]) -> list[CheckedEvent]:
    out = []
    for event in events:
        item = checker.check_or_raise(orjson.dumps(signer.sign(event)))
        assert isinstance(item, CheckedEvent)
        out.append(item)
    return out


def ready(kind: str, items: list[CheckedEvent]) -> ReadyFile:
    return ReadyFile(kind, tuple(Held(item, Delivery(b"", {}, None, "k", False, n), 0.0)
                                 for n, item in enumerate(items, 1)), "test")


class TestVerify:
    def code(self, checker: MessageChecker, body: bytes) -> str:
        with pytest.raises(EventRejected) as info:
            checker.check_or_raise(body)
        return info.value.code

    def test_codes(self, checker: MessageChecker, signer: Signer, template: dict[str, Any]) -> None:
        """Each failure has its stable code."""
        event = new_event(template, 1)
        assert self.code(checker, b"[1, 2]") == "not_json"
        assert self.code(checker, orjson.dumps(event)) == "missing_signature"
        assert self.code(checker, orjson.dumps(Signer.generate().sign(event))) == "unknown_key"
        tampered = signer.sign(event) | {"dtctestflag": "TR01"}
        assert self.code(checker, orjson.dumps(tampered)) == "bad_signature"
        assert self.code(checker, orjson.dumps(signer.sign(event | {"type": "uk.dtc.D9999.v001"}))) == "unknown_flow"
        assert self.code(checker, orjson.dumps(signer.sign(event | {"data": {"nope": {}}}))) == "schema_invalid"
        no_flag = {k: v for k, v in event.items() if k != "dtctestflag"}
        assert self.code(checker, orjson.dumps(signer.sign(no_flag))) == "envelope_invalid"
        assert self.code(checker, orjson.dumps(signer.sign(event | {"dtcfrom": "ELSE"}))) == "envelope_invalid"
        assert self.code(checker, orjson.dumps(signer.sign(event | {"dtcindex": 3, "dtcflowcount": 2}))) == \
            "envelope_invalid"

    def test_a_line_break_in_a_value_is_refused(self, checker: MessageChecker, signer: Signer,
                                                 template: dict[str, Any]) -> None:
        """'|' is refused by the CHAR format; a line break would split a line just as badly."""
        [event] = numbered_events(template, 1)
        event["data"]["mpan_cores"]["meter_reading_types"][0]["meter_id"] = "M1\nZPT"
        assert self.code(checker, orjson.dumps(signer.sign(event))) == "schema_invalid"

    def test_manifest(self, checker: MessageChecker, signer: Signer, reader: FlowFileReader) -> None:
        source = source_file(EXAMPLES / "D0030001.txt", reader)
        notice = checker.check_or_raise(orjson.dumps(signer.sign(source.manifest)))
        assert isinstance(notice, ManifestNotice) and notice.first_event_id == source.events[0]["id"]
        broken = source.manifest | {"data": source.manifest["data"] | {"sha256": "xyz"}}
        assert self.code(checker, orjson.dumps(signer.sign(broken))) == "manifest_invalid"

    def test_check_answers_with_values_and_governs(self, definitions: DefinitionSet, trust: TrustStore,
                                                   signer: Signer, template: dict[str, Any]) -> None:
        """`check` never raises: a rejection is a value (it crosses a worker's pipe), and governance has its say
        after the signature, with its decision attached for the metrics."""
        rules = parse_rules({"participants": {"outbound": {"deny": ["SYNB"]}}}, participant_id="SYNA",
                            participant_role="X", definitions=definitions)
        checker = MessageChecker(definitions, trust, rules)
        not_json = checker.check(b"[1")
        assert isinstance(not_json.outcome, Rejection) and not_json.outcome.code == "not_json"
        assert not_json.decision is None  # refused before governance
        blocked = checker.check(orjson.dumps(signer.sign(new_event(template, 1))))
        assert isinstance(blocked.outcome, Rejection) and blocked.decision is not None
        assert (blocked.outcome.code, blocked.decision.outcome, blocked.decision.participant) == \
            (blocked.decision.rule, "reject", "SYNB")
        plain = MessageChecker(definitions, trust).check(orjson.dumps(signer.sign(new_event(template, 1))))
        assert isinstance(plain.outcome, CheckedEvent) and plain.decision is None


class TestWrite:
    def test_new_file_layout_counter_name_and_mode(
        self, writer: OutboundWriter, checker: MessageChecker, signer: Signer, template: dict[str, Any], out_dir: Path,
        reader: FlowFileReader, ledger: Ledger, clock: FakeClock
    ) -> None:
        """ZHV/ZPT filled in: the sender's next identifier, UK local timestamps from the clock, test flag."""
        items = verified(checker, signer, numbered_events(template, 3, test_flag="TR01"))
        first = writer.write(ready("batch", items))
        clock.advance(hours=200)  # into winter: GMT
        clock.now = clock.now.replace(month=12)
        second = writer.write(ready("batch", verified(checker, signer, numbered_events(template, 1, start=9))))
        assert first and second
        assert (first.file_identifier, second.file_identifier) == ("0000000001", "0000000002")
        assert first.path.name == "D0010002_SYNA_0000000001.usr"
        text = first.path.read_text().splitlines()
        assert text[0] == "ZHV|0000000001|D0010002|X|SYNA|X|SYNB|20240701123005||||TR01|"
        assert text[-1] == f"ZPT|0000000001|{len(text) - 2}||3|20240701123005|"
        assert second.path.read_text().splitlines()[0].split("|")[7] == "20241209193005"  # GMT
        assert check_file(first.path, reader).ok
        assert first.path.stat().st_mode & 0o777 == 0o640
        assert ledger.seen_events(item.key for item in items) == {item.key for item in items}

    def test_name_pattern_and_mode_are_configurable(
        self, definitions: DefinitionSet, checker: MessageChecker, ledger: Ledger, out_dir: Path, signer: Signer,
        template: dict[str, Any]
    ) -> None:
        config = OutboundConfig(folder=out_dir, file_mode=0o600,
                                name_pattern="{from_role}{from_participant}-{to_role}{to_participant}-{flow}-v{version}"
                                             "-{file_identifier}.dtn")
        writer = OutboundWriter(definitions, ledger, config, outbox=FolderOutbox(config.folder, config.file_mode))
        record = writer.write(ready("batch", verified(checker, signer, numbered_events(template, 1))))
        assert record and record.path.name == "XSYNA-XSYNB-D0010-v002-0000000001.dtn"
        assert record.path.stat().st_mode & 0o777 == 0o600

    def test_original_is_exact_and_an_existing_name_is_never_overwritten(
        self, writer: OutboundWriter, checker: MessageChecker, signer: Signer, reader: FlowFileReader, out_dir: Path
    ) -> None:
        source = source_file(EXAMPLES / "D0030001.txt", reader)
        (out_dir / "D0030001_SYNA_0000000003.usr").write_bytes(b"the gateway has not sent me yet")
        record = writer.write(ready("original", verified(checker, signer, source.events)))
        assert record and record.path.name == "D0030001_SYNA_0000000003.1.usr"
        assert record.path.read_bytes() == source.path.read_bytes()
        assert (out_dir / "D0030001_SYNA_0000000003.usr").read_bytes() == b"the gateway has not sent me yet"

    def test_a_file_signed_across_a_key_rotation(self, writer: OutboundWriter, definitions: DefinitionSet,
                                                 reader: FlowFileReader, tmp_path: Path) -> None:
        """A source file whose events were signed partly with an EdDSA key and partly with its ES256 successor (the
        overlap of a rotation, either way round): one trust file holding both verifies every event and the file comes
        back byte for byte; once the old key leaves the trust file, its events are unknown_key."""
        old, new = Signer.generate("EdDSA", participant="SYNA"), Signer.generate("ES256", participant="SYNA")
        trust_file = tmp_path / "trust.jwks.json"
        trust_file.write_bytes(orjson.dumps({"keys": [old.public_jwk(), new.public_jwk()]}))
        source = source_file(EXAMPLES / "D0010002.txt", reader)
        assert len(source.events) >= 2
        bodies = [orjson.dumps((old if n % 2 else new).sign(event)) for n, event in enumerate(source.events)]
        checker = MessageChecker(definitions, TrustStore.from_jwks_file(trust_file))
        items = [checker.check_or_raise(body) for body in bodies]
        assert all(isinstance(item, CheckedEvent) for item in items)
        record = writer.write(ready("original", items))  # type: ignore[arg-type]
        assert record and record.path.read_bytes() == source.path.read_bytes()
        trust_file.write_bytes(orjson.dumps({"keys": [new.public_jwk()]}))
        after = MessageChecker(definitions, TrustStore.from_jwks_file(trust_file))
        for n, body in enumerate(bodies):
            if n % 2 == 0:
                assert isinstance(after.check_or_raise(body), CheckedEvent)
                continue
            with pytest.raises(EventRejected) as info:
                after.check_or_raise(body)
            assert info.value.code == "unknown_key"

    def test_written_events_are_skipped(self, writer: OutboundWriter, checker: MessageChecker, signer: Signer,
                                        template: dict[str, Any]) -> None:
        items = verified(checker, signer, numbered_events(template, 2))
        assert writer.write(ready("batch", items))
        assert writer.write(ready("batch", items)) is None
        others = [(items[0].source, "other"), ("urn:mpid:SYNB", items[0].id)]
        assert writer.written([items[0].key, *others]) == {items[0].key}

    def test_manifest_before_and_after(self, writer: OutboundWriter, checker: MessageChecker, signer: Signer,
                                       reader: FlowFileReader, ledger: Ledger) -> None:
        """A manifest is compared whichever arrives first; a wrong hash is recorded as a mismatch."""
        first = source_file(EXAMPLES / "D0030001.txt", reader)
        second = source_file(EXAMPLES / "D0036001.txt", reader)
        wrong = second.manifest | {"data": second.manifest["data"] | {"sha256": "0" * 64}}
        assert writer.note_manifest(checker.check_or_raise(orjson.dumps(signer.sign(first.manifest)))) is None  # type: ignore[arg-type]
        a = writer.write(ready("original", verified(checker, signer, first.events)))
        b = writer.write(ready("original", verified(checker, signer, second.events)))
        assert writer.note_manifest(checker.check_or_raise(orjson.dumps(signer.sign(wrong)))) is False  # type: ignore[arg-type]
        assert a and b
        assert ledger.outbound_file(a.id).manifest_match is True  # type: ignore[union-attr]
        assert ledger.outbound_file(b.id).manifest_match is False  # type: ignore[union-attr]


class TestRecovery:
    def pending(self, writer: OutboundWriter, ledger: Ledger, out_dir: Path, data: bytes) -> int:
        import hashlib

        draft = OutboundFileDraft(kind="batch", path=out_dir / "F.usr", tmp_path=out_dir / ".F.usr.abc.tmp",
                                  sha256=hashlib.sha256(data).hexdigest(), size=len(data), flow="D0010002",
                                  from_participant="SYNA", to_participant="SYNB", file_identifier="0000000001",
                                  test_flag="OPER")
        return ledger.begin_outbound_file(draft, [(SYNA, "e1"), (SYNA, "e2")])

    def test_crash_before_the_link_rolls_back(self, writer: OutboundWriter, ledger: Ledger, out_dir: Path) -> None:
        """A half-written temp file and no final name: removed, and its events may be written again."""
        self.pending(writer, ledger, out_dir, b"complete content")
        (out_dir / ".F.usr.abc.tmp").write_bytes(b"compl")
        assert ledger.seen_event((SYNA, "e1"))
        recovery = writer.recover()
        assert (recovery.finished, recovery.rolled_back) == (0, 1)
        assert not ledger.seen_event((SYNA, "e1")) and not list(out_dir.iterdir())
        assert ledger.pending_outbound_files() == []

    def test_crash_after_the_link_finishes(self, writer: OutboundWriter, ledger: Ledger, out_dir: Path) -> None:
        """The final name holds the recorded bytes: the file is kept and recorded as written."""
        file_id = self.pending(writer, ledger, out_dir, b"complete content")
        (out_dir / "F.usr").write_bytes(b"complete content")
        os.link(out_dir / "F.usr", out_dir / ".F.usr.abc.tmp")
        recovery = writer.recover()
        assert (recovery.finished, recovery.rolled_back) == (1, 0)
        assert ledger.seen_event((SYNA, "e1"))
        assert ledger.outbound_file(file_id).state == "written"  # type: ignore[union-attr]
        assert visible_files(out_dir) == [out_dir / "F.usr"] and len(list(out_dir.iterdir())) == 1

    def test_someone_elses_file_under_the_name_is_not_ours(self, writer: OutboundWriter, ledger: Ledger,
                                                           out_dir: Path) -> None:
        self.pending(writer, ledger, out_dir, b"complete content")
        (out_dir / "F.usr").write_bytes(b"other")
        assert writer.recover().rolled_back == 1
        assert (out_dir / "F.usr").read_bytes() == b"other" and not ledger.seen_event((SYNA, "e2"))


def test_new_events_that_break_a_per_file_rule_are_refused(writer: OutboundWriter, checker: MessageChecker,
                                                          signer: Signer,
                                                          reader: FlowFileReader, out_dir: Path) -> None:
    """D0030 needs one SUP group per file: 3 of its instances alone are no valid file, so nothing is written."""
    source = source_file(EXAMPLES / "D0030001.txt", reader)
    news = [new_event(event, n) for n, event in enumerate(source.events[:3])]
    with pytest.raises(EventRejected) as info:
        writer.write(ready("batch", verified(checker, signer, news)))
    assert info.value.code == "file_invalid" and "SUP" in str(info.value)
    assert not list(out_dir.iterdir()) and not writer.written([key(news[0])])
