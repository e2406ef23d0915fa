"""Issue 14: hostile but well-signed envelopes. Attributes that become file names and header lines are held to their
DTC formats before anything is held; a bad name is a rejection, never a storage fault retried forever; a failed write
or an unsettleable pending row never blocks the events behind it or the next start."""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any

import orjson
import pytest

from bridge.adapters.ledger import Ledger, OutboundFileDraft
from bridge.adapters.rabbitmq import REJECT_CODE_HEADER, REJECT_REASON_HEADER, RabbitPublisher
from bridge.adapters.rabbitmq.topology import Topology
from bridge.adapters.spool import FolderOutbox
from bridge.config import OutboundConfig
from bridge.dtn.definitions import DefinitionSet
from bridge.dtn.reader import FlowFileReader
from bridge.errors import StorageError
from bridge.outbound import CheckedEvent, EventRejected, MessageChecker, OutboundLoop, OutboundWriter
from bridge.signing import Signer, TrustStore
from tests.conftest import EXAMPLES, Admin
from tests.helpers import wait_until
from tests.outbound.outbound_helpers import (
    FakeClock,
    message,
    meter_ids,
    numbered_events,
    running,
    source_file,
    visible_files,
)
from tests.outbound.test_outbound_loop import d0010_template
from tests.outbound.test_outbound_writer import ready, verified


def rejected(admin: Admin, topology: Topology, count: int) -> dict[str, tuple[str, str]]:
    """message id -> (code, reason) of `count` dead-lettered messages."""
    got = admin.read(topology.outbound_rejected_queue or "", count, timeout=10)
    return {props.message_id: (props.headers[REJECT_CODE_HEADER], props.headers[REJECT_REASON_HEADER])
            for _, props, _ in got}


SYNA = "urn:mpid:SYNA"


@pytest.fixture
def original(reader: FlowFileReader) -> list[dict[str, Any]]:
    """The events of one source file: they carry its whole envelope."""
    return source_file(EXAMPLES / "D0030001.txt", reader).events


def code_of(checker: MessageChecker, signer: Signer, event: dict[str, Any]) -> str | None:
    """The reject code of a signed event, or None when it passes."""
    try:
        checker.check_or_raise(orjson.dumps(signer.sign(event)))
    except EventRejected as exc:
        return exc.code
    return None


HOSTILE_ORIGINAL = [
    ("dtcfileid", "a/b"), ("dtcfileid", "../../x"), ("dtcfileid", "ab\x00"), ("dtcfileid", "x" * 300),
    ("dtcfileid", "x" * 11), ("dtcfileid", "a b"), ("dtcfileid", "a\\b"), ("dtcfileid", "é"),
    ("dtcfromrole", "XX"), ("dtcfromrole", "x"), ("dtctorole", "\x0b"), ("dtcto", "SYNB|"), ("dtcto", "syn"),
    ("dtccreated", "20241301120000"), ("dtccreated", "２０２４０１０１１２００００"), ("dtccompleted", "yesterday"),
    ("dtcchecksum", "1\n2"), ("dtcchecksum", "1" * 11), ("dtctestflag", "OPER\r"), ("dtctestflag", "OPERX"),
    ("dtcsendapp", "a\u2028b"), ("dtcrecvapp", "123456"), ("dtcbroadcast", "\x1c"),
]


class TestEnvelope:
    @pytest.mark.parametrize(("name", "value"), HOSTILE_ORIGINAL)
    def test_an_original_with_a_hostile_file_attribute_is_rejected(
        self, checker: MessageChecker, signer: Signer, original: list[dict[str, Any]], name: str, value: str
    ) -> None:
        """Every attribute that reaches the file name or the ZHV/ZPT lines is held to its DTC format."""
        assert code_of(checker, signer, original[0] | {name: value}) == "envelope_invalid"

    @pytest.mark.parametrize(("name", "value"), [("dtcto", "SY\nB"), ("dtctorole", "|"), ("dtcfromrole", "\x00"),
                                                 ("dtctestflag", "O\rP")])
    def test_a_new_event_with_a_hostile_header_attribute_is_rejected(
        self, checker: MessageChecker, signer: Signer, reader: FlowFileReader, name: str, value: str
    ) -> None:
        [event] = numbered_events(d0010_template(reader), 1)
        assert code_of(checker, signer, event | {name: value}) == "envelope_invalid"

    def test_the_honest_envelope_passes(self, checker: MessageChecker, signer: Signer,
                                        original: list[dict[str, Any]]) -> None:
        assert code_of(checker, signer, original[0]) is None
        assert code_of(checker, signer, original[0] | {"dtcfileid": "DTS0018862", "dtcsendapp": "APP 1"}) is None

    @pytest.mark.parametrize("value", ["M1\x0bZPT", "M1\x00", "M1\u2028", "M1\x85", "M1\x7f", "M1\t"])
    def test_a_control_character_in_a_char_item_is_refused(self, checker: MessageChecker, signer: Signer,
                                                          reader: FlowFileReader, value: str) -> None:
        [event] = numbered_events(d0010_template(reader), 1)
        event["data"]["mpan_cores"]["meter_reading_types"][0]["meter_id"] = value
        assert code_of(checker, signer, event) == "schema_invalid"


class TestFileNames:
    @pytest.mark.parametrize("pattern", ["{file_identifier}.usr", "{file_identifier}"])
    def test_a_name_that_is_no_plain_visible_part_is_rejected_not_retried(
        self, definitions: DefinitionSet, checker: MessageChecker, ledger: Ledger, out_dir: Path, signer: Signer,
        original: list[dict[str, Any]], pattern: str
    ) -> None:
        """A file identifier of dots is valid DTC text, but `..` or `...usr` is no file name the gateway sends: the
        events are refused (dead-lettered by the loop), nothing is written and nothing stays recorded."""
        writer = OutboundWriter(definitions, ledger, OutboundConfig(folder=out_dir, name_pattern=pattern),
                                outbox=FolderOutbox(out_dir))
        events = [event | {"dtcfileid": ".."} for event in original]
        with pytest.raises(EventRejected) as info:
            writer.write(ready("original", verified(checker, signer, events)))
        assert info.value.code == "file_name_invalid"
        assert not list(out_dir.iterdir()) and not list(out_dir.parent.glob("*.usr"))
        assert ledger.outbound_files() == []


def _draft(out_dir: Path, name: str, tmp_name: str) -> OutboundFileDraft:
    return OutboundFileDraft(kind="original", path=out_dir / name, tmp_path=out_dir / tmp_name,
                             sha256=hashlib.sha256(b"x").hexdigest(), size=1, flow="D0010002",
                             from_participant="SYNA", to_participant="SYNB", file_identifier="1", test_flag="OPER")


class TestFailedWrites:
    def test_put_abandons_its_record_when_removing_the_temporary_name_fails_too(
        self, definitions: DefinitionSet, ledger: Ledger, config: OutboundConfig, out_dir: Path
    ) -> None:
        """A name too long for the filesystem fails the write and then the clean-up: the record is rolled back
        anyway, so its events are not later acked as duplicates of a file that was never written."""
        writer = OutboundWriter(definitions, ledger, config, outbox=FolderOutbox(config.folder, config.file_mode))
        name = "x" * 300
        file_id = ledger.begin_outbound_file(_draft(out_dir, name, f".{name}.tmp"), [(SYNA, "e1")])
        with pytest.raises(StorageError):
            writer._put(b"x", out_dir / f".{name}.tmp", out_dir / name, file_id)
        assert ledger.outbound_files() == [] and not ledger.seen_event((SYNA, "e1"))

    @pytest.mark.parametrize(("name", "tmp_name"), [("a\x00b", ".a\x00b.tmp"), ("x" * 300, ".x.tmp"),
                                                    ("../escaped.usr", ".escaped.tmp")])
    def test_recover_rolls_back_rows_it_cannot_settle_and_goes_on(
        self, definitions: DefinitionSet, ledger: Ledger, config: OutboundConfig, out_dir: Path, name: str,
        tmp_name: str
    ) -> None:
        """A pending row whose name cannot be read (NUL, too long) or lies outside the folder is rolled back; the
        honest row after it is still settled, and start-up is never stopped."""
        ledger.begin_outbound_file(_draft(out_dir, name, tmp_name), [(SYNA, "hostile")])
        ledger.begin_outbound_file(_draft(out_dir, "F.usr", ".F.usr.tmp"), [(SYNA, "honest")])
        (out_dir / "F.usr").write_bytes(b"x")
        (out_dir.parent / "escaped.usr").write_bytes(b"x")  # a file outside that must not count as ours
        outbox = FolderOutbox(config.folder, config.file_mode)
        recovery = OutboundWriter(definitions, ledger, config, outbox=outbox).recover()
        assert (recovery.finished, recovery.rolled_back) == (1, 1)
        assert ledger.pending_outbound_files() == []
        assert not ledger.seen_event((SYNA, "hostile")) and ledger.seen_event((SYNA, "honest"))


def test_a_hostile_original_is_dead_lettered_and_the_honest_events_behind_it_are_written(
    loop: OutboundLoop, publisher: RabbitPublisher, reader: FlowFileReader, signer: Signer, admin: Admin,
    topology: Topology, ledger: Ledger, out_dir: Path, original: list[dict[str, Any]]
) -> None:
    """Against the real broker: a signed source file whose identifier holds '/' (it used to be retried as a storage
    fault forever), one whose identifier holds NUL (it used to kill the loop), a body naming `dtcto` twice, and
    honest new events behind them."""
    slash = [event | {"dtcfileid": "a/b"} for event in original]
    nul = [event | {"dtcfileid": "a\x00b", "id": f"nul-{event['id']}"} for event in original]
    *honest, twice = numbered_events(d0010_template(reader), 4)
    ambiguous = message(twice, body=b'{"dtcto":"EVIL",' + orjson.dumps(signer.sign(twice))[1:])
    publisher.publish_all([message(e, signer) for e in slash + nul] + [ambiguous]
                          + [message(e, signer) for e in honest])
    loop.batcher.batch_seconds = 0.5
    with running(loop):
        reasons = rejected(admin, topology, len(slash) + len(nul) + 1)
        wait_until(lambda: len(visible_files(out_dir)) == 1)
    assert reasons.pop(twice["id"])[0] == "json_ambiguous"
    assert {code for code, _reason in reasons.values()} == {"envelope_invalid"}
    assert all("dtcfileid" in reason for _code, reason in reasons.values())
    [written] = visible_files(out_dir)
    assert sorted(meter_ids(written, reader)) == ["M0000000", "M0000001", "M0000002"]
    assert admin.message_count(topology.outbound_queue or "") == 0
    assert list(out_dir.iterdir()) == [written]


@pytest.fixture
def loop(amqp_url: str, topology: Topology, client_name: str, definitions: DefinitionSet, trust: TrustStore,
         ledger: Ledger, config: OutboundConfig, clock: FakeClock, admin: Admin) -> OutboundLoop:
    from tests.outbound.test_outbound_loop import make_loop

    return make_loop(amqp_url, topology, client_name, definitions, trust, ledger, config, clock)


class TestBodies:
    def test_a_duplicate_member_is_refused(self, checker: MessageChecker, signer: Signer, reader: FlowFileReader
                                           ) -> None:
        """`dtcto` twice: orjson reads the signed last one, a first-wins parser the other; refused, not guessed."""
        [event] = numbered_events(d0010_template(reader), 1)
        body = orjson.dumps(signer.sign(event))
        assert isinstance(checker.check_or_raise(body), CheckedEvent)
        hostile = b'{"dtcto":"EVIL",' + body[1:]
        with pytest.raises(EventRejected) as info:
            checker.check_or_raise(hostile)
        assert info.value.code == "json_ambiguous" and "'dtcto' appears twice" in str(info.value)
        spaced = body.replace(b'","', b'", "')  # not compact, but unambiguous: still accepted
        assert isinstance(checker.check_or_raise(spaced), CheckedEvent)

    @pytest.mark.parametrize("spaced", [False, True])
    def test_a_float_is_refused(self, checker: MessageChecker, signer: Signer, reader: FlowFileReader,
                                spaced: bool) -> None:
        """A float verifies when signed as orjson writes it, but RFC 8785 may write it otherwise: refused."""
        [event] = numbered_events(d0010_template(reader), 1)
        body = signer.signed_json(orjson.dumps(event | {"dtcweight": 0.1}, option=orjson.OPT_SORT_KEYS))
        if spaced:
            body = body.replace(b'","', b'", "')
        with pytest.raises(EventRejected) as info:
            checker.check_or_raise(body)
        assert info.value.code == "json_ambiguous" and "0.1" in str(info.value)


def _from(event: dict[str, Any], participant: str) -> dict[str, Any]:
    """The same event (same id) as another trusted sender would publish it."""
    return event | {"source": f"urn:mpid:{participant}", "dtcfrom": participant}


class TestProvenance:
    def test_another_senders_event_with_our_id_is_not_our_duplicate(
        self, definitions: DefinitionSet, checker: MessageChecker, ledger: Ledger, config: OutboundConfig,
        signer: Signer, reader: FlowFileReader
    ) -> None:
        """CloudEvents identity is (source, id): EVIL's copy of SYNA's id, written first, does not make SYNA's
        event a duplicate."""
        writer = OutboundWriter(definitions, ledger, config, outbox=FolderOutbox(config.folder, config.file_mode))
        [honest] = numbered_events(d0010_template(reader), 1)
        assert writer.write(ready("batch", verified(checker, signer, [_from(honest, "EVIL")])))
        record = writer.write(ready("batch", verified(checker, signer, [honest])))
        assert record is not None and record.from_participant == "SYNA"

    def test_another_senders_manifest_cannot_replace_ours(
        self, definitions: DefinitionSet, checker: MessageChecker, ledger: Ledger, config: OutboundConfig,
        signer: Signer, reader: FlowFileReader
    ) -> None:
        writer = OutboundWriter(definitions, ledger, config, outbox=FolderOutbox(config.folder, config.file_mode))
        source = source_file(EXAMPLES / "D0030001.txt", reader)
        forged = _from(source.manifest, "EVIL")
        forged["data"] = forged["data"] | {"from_participant": "EVIL", "sha256": "0" * 64}
        for manifest in (source.manifest, forged):
            writer.note_manifest(checker.check_or_raise(orjson.dumps(signer.sign(manifest))))  # type: ignore[arg-type]
        record = writer.write(ready("original", verified(checker, signer, source.events)))
        assert record is not None and ledger.outbound_file(record.id).manifest_match is True  # type: ignore[union-attr]


def test_another_senders_copy_published_first_does_not_swallow_the_honest_event(
    loop: OutboundLoop, publisher: RabbitPublisher, reader: FlowFileReader, signer: Signer, admin: Admin,
    topology: Topology, out_dir: Path
) -> None:
    """Against the real broker: EVIL publishes SYNA's event id first; both are written, each in its sender's file."""
    honest = numbered_events(d0010_template(reader), 2)
    publisher.publish_all([message(_from(e, "EVIL"), signer) for e in honest] + [message(e, signer) for e in honest])
    loop.batcher.batch_seconds = 0.5
    with running(loop):
        wait_until(lambda: len(visible_files(out_dir)) == 2)
        wait_until(lambda: admin.message_count(topology.outbound_queue or "") == 0)
    names = sorted(p.name.split("_")[1] for p in visible_files(out_dir))
    assert names == ["EVIL", "SYNA"]
    assert all(sorted(meter_ids(p, reader)) == ["M0000000", "M0000001"] for p in visible_files(out_dir))


def test_a_huge_value_quoted_in_the_reason_is_still_dead_lettered(
    loop: OutboundLoop, publisher: RabbitPublisher, reader: FlowFileReader, signer: Signer, admin: Admin,
    topology: Topology, out_dir: Path
) -> None:
    """Against the real broker: a reject reason quotes the bad value; a value of 300 kB would make a header larger
    than a frame, so the dead-letter copy was refused, the delivery came back and blocked the queue forever. The
    reason is bounded, the event dead-lettered, and the honest event behind it written."""
    hostile, honest = numbered_events(d0010_template(reader), 2)
    hostile["data"]["mpan_cores"]["meter_reading_types"][0]["meter_id"] = "M" * 300_000
    publisher.publish_all([message(hostile, signer), message(honest, signer)])
    loop.batcher.batch_seconds = 0.5
    with running(loop):
        reasons = rejected(admin, topology, 1)
        wait_until(lambda: len(visible_files(out_dir)) == 1)
    [(code, reason)] = reasons.values()
    assert code == "schema_invalid" and "meter_id" in reason and len(reason) <= 1000
    assert meter_ids(visible_files(out_dir)[0], reader) == ["M0000001"]
