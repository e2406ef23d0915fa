"""Canonical events: the envelope, deterministic ids, typed data, and the byte-exact round trip."""

from __future__ import annotations

import hashlib
import io
import uuid
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from bridge.dtn.definitions import DefinitionSet
from bridge.dtn.reader import FlowFileReader
from bridge.dtn.synthetic import synthetic_file
from bridge.errors import EventError, FlowFileError
from bridge.events.envelope import EVENT_NAMESPACE, Event, EventBuilder, event_id_of, render_events
from bridge.inbound.flowfile import check_file, file_events
from tests.conftest import EXAMPLES, REPO, sample

VALID_SAMPLES = ["DTC5259515123502080915D0010", "ocdiff_D0155001_a", "ocdiff_D0155001_b",
                 "OVOE1359", "OVOE1429"]


def events_of(path: Path, reader: FlowFileReader) -> list[Event]:
    checked = check_file(path, reader)
    assert checked.describe_defects() == []
    return list(file_events(path, reader, checked))


def events_of_text(text: str, reader: FlowFileReader) -> list[Event]:
    checked = reader.read(io.StringIO(text, newline="")).check()
    assert checked.describe_defects() == []
    assert checked.definition and checked.header and checked.trailer
    build = EventBuilder(checked.definition, checked.header, checked.trailer, checked.flow_count)
    return [build(instance) for instance in reader.read(io.StringIO(text, newline=""))]


class TestEvents:
    def test_d0010_event(self, reader: FlowFileReader) -> None:
        """The first Kraken D0010 instance becomes the documented event."""
        event = events_of(sample("DTC5259515123502080915D0010"), reader)[0]
        assert event["type"] == "uk.dtc.D0010.v002"
        assert event["source"] == "urn:mpid:UDMS"
        assert event["time"] == "2016-03-02T15:31:51Z"  # March: GMT
        assert (event["dtcfileid"], event["dtcindex"], event["dtcflowcount"]) == ("0000475656", 1, 11)
        assert (event["dtcfromrole"], event["dtcto"], event["dtctestflag"]) == ("D", "MRCY", "OPER")
        assert event["subject"] == "1200023305967"
        assert event["data"] == {"mpan_cores": {
            "mpan_core": "1200023305967", "bsc_validation_status": "V",
            "meter_reading_types": [{"meter_id": "F75A 00802", "reading_type": "D", "register_readings": [{
                "meter_register_id": "S", "reading_date_time": "2016-02-22T00:00:00", "register_reading": "56311.0",
                "meter_reading_flag": True, "reading_method": "N"}]}]}}

    def test_summer_time(self, reader: FlowFileReader) -> None:
        """File timestamps are UK local time; `time` is UTC."""
        text = sample("DTC5259515123502080915D0010").read_text().replace("20160302153151", "20230701120000")
        assert events_of_text(text, reader)[0]["time"] == "2023-07-01T11:00:00Z"

    def test_ids_are_deterministic_and_distinct(self, reader: FlowFileReader) -> None:
        """The same file always gives the same ids; every instance has its own."""
        path = sample("DTC5259515123502080915D0010")
        first = [event["id"] for event in events_of(path, reader)]
        assert first == [event["id"] for event in events_of(path, reader)]
        assert len(set(first)) == len(first)

    @pytest.mark.parametrize(("name", "first", "last"), [
        # pinned again when the examples' MPAN Cores got their check digits (issue 13): new content, new ids
        ("D0010002.txt", "6890f7b2-9a20-5fa6-8690-29d50e412bff", "83fd996b-4d76-5d5f-9b1c-b95d451e3154"),
        ("D0275001.txt", "bf692e32-1a8d-5faa-8dc3-b363fa278cca", "7f16f5a1-3d5e-5716-b78b-f64696f0dac0"),
    ])
    def test_ids_never_change(self, reader: FlowFileReader, name: str, first: str, last: str) -> None:
        """Ids are forever (consumers de-duplicate by them): the shipped examples' ids, pinned."""
        ids = [event["id"] for event in events_of(EXAMPLES / name, reader)]
        assert (ids[0], ids[-1]) == (first, last)

    def test_second_pass_detects_a_changed_file(self, reader: FlowFileReader, tmp_path: Path) -> None:
        """Given the SHA-256 taken before the first pass, a byte changed after it fails the second pass."""
        path = tmp_path / "D0010002.txt"
        path.write_bytes((EXAMPLES / "D0010002.txt").read_bytes())
        checked = check_file(path, reader)
        digest = hashlib.sha256(path.read_bytes()).hexdigest()
        assert len(list(file_events(path, reader, checked, digest))) == 2
        path.write_bytes(path.read_bytes().replace(b"|3897788.8|", b"|3897788.9|", 1))  # valid, other meaning
        with pytest.raises(FlowFileError, match="SHA-256 differs"):
            list(file_events(path, reader, checked, digest))

    def test_ids_change_with_content(self, reader: FlowFileReader) -> None:
        """A file re-sent with a changed reading gets a new id for that instance only."""
        text = sample("DTC5259515123502080915D0010").read_text()
        before = [event["id"] for event in events_of_text(text, reader)]
        after = [event["id"] for event in events_of_text(text.replace("56311.0", "56312.0"), reader)]
        assert before[0] != after[0] and before[1:] == after[1:]


class TestSecondPass:
    """file_events builds events straight from the lines where it can: the events must be those of the line walk."""

    @settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
    @given(seed=st.integers(0, 2**32), fanout=st.integers(1, 3), index=st.integers(0, 10**6))
    def test_generated_files(self, definitions: DefinitionSet, reader: FlowFileReader, tmp_path: Path, seed: int,
                             fanout: int, index: int) -> None:
        definition = definitions[sorted(definitions)[index % len(definitions)]]
        path = tmp_path / f"{definition.reference}-{seed}.txt"
        path.write_text("".join(synthetic_file(definition, seed, fanout=fanout)), newline="")
        assert events_of(path, reader) == events_of_text(path.read_bytes().decode(), reader)

    @pytest.mark.parametrize("name", VALID_SAMPLES)
    def test_real_samples(self, reader: FlowFileReader, name: str) -> None:
        path = sample(name)
        assert events_of(path, reader) == events_of_text(path.read_bytes().decode(), reader)


class TestRoundTrip:
    @pytest.mark.parametrize("name", VALID_SAMPLES)
    def test_real_samples(self, reader: FlowFileReader, name: str) -> None:
        """parse then render gives back the identical bytes of every valid real sample."""
        path = sample(name)
        rendered = "".join(render_events(events_of(path, reader), reader.definitions))
        assert rendered.encode() == path.read_bytes()

    def test_dtn_checksum_round_trip(self, reader: FlowFileReader) -> None:
        """A ZHV trailer's checksum comes back as it was."""
        text = sample("DTC5259515123502080915D0010").read_text().replace("|35||11|", "|35|987654|11|")
        assert "".join(render_events(events_of_text(text, reader), reader.definitions)) == text

    def test_shipped_examples(self, reader: FlowFileReader) -> None:
        """Every shipped example is valid and round-trips byte for byte."""
        paths = sorted(EXAMPLES.glob("*.txt"))
        assert len(paths) >= len(reader.definitions)
        for path in paths:
            rendered = "".join(render_events(events_of(path, reader), reader.definitions))
            assert rendered.encode() == path.read_bytes(), path.name

    @settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
    @given(seed=st.integers(0, 2**32), index=st.integers(0, 200))
    def test_generated_files(self, definitions: DefinitionSet, seed: int, index: int) -> None:
        """A valid file generated from any definition parses, and renders back to the same bytes."""
        reader = FlowFileReader(definitions, strict=True)
        definition = list(definitions.values())[index % len(definitions)]
        text = "".join(synthetic_file(definition, seed, fanout=2))
        events = events_of_text(text, reader)
        assert "".join(render_events(events, definitions)) == text


class TestRenderRefuses:
    def kraken(self, reader: FlowFileReader) -> list[Event]:
        return events_of(sample("DTC5259515123502080915D0010"), reader)

    def test_bad_item(self, reader: FlowFileReader) -> None:
        """An item value that does not fit its format names its path."""
        events = self.kraken(reader)
        events[0]["data"]["mpan_cores"]["meter_reading_types"][0]["register_readings"][0]["register_reading"] = "1x"
        with pytest.raises(EventError, match=r"data\.mpan_cores\.meter_reading_types\[0\]\.register_readings\[0\]"
                                             r"\.register_reading \(NUM\(9,1\)\): '1x' is not a number"):
            "".join(render_events(events, reader.definitions))

    def test_missing_mandatory(self, reader: FlowFileReader) -> None:
        """A missing mandatory item is named."""
        events = self.kraken(reader)
        del events[0]["data"]["mpan_cores"]["bsc_validation_status"]
        with pytest.raises(EventError, match="mandatory item J0022"):
            "".join(render_events(events, reader.definitions))

    def test_unknown_key(self, reader: FlowFileReader) -> None:
        """Keys the definition does not know are refused, not dropped."""
        events = self.kraken(reader)
        events[0]["data"]["mpan_cores"]["surprise"] = 1
        with pytest.raises(EventError, match="'surprise' is not an item or group of group 026"):
            "".join(render_events(events, reader.definitions))

    def test_mixed_files(self, reader: FlowFileReader) -> None:
        """Events of two files cannot make one file."""
        events = self.kraken(reader)
        events[1]["dtcfileid"] = "0000000001"
        with pytest.raises(EventError, match="differs from the first event"):
            "".join(render_events(events, reader.definitions))

    def test_missing_instance(self, reader: FlowFileReader) -> None:
        """A file's events must all be there, in order."""
        events = self.kraken(reader)
        del events[3]
        with pytest.raises(EventError, match="dtcindex is 5, expected 4"):
            "".join(render_events(events, reader.definitions))

    @pytest.mark.parametrize(("name", "value"), [
        ("dtcfileid", "a/b"), ("dtcfileid", "x" * 11), ("dtcfileid", "a\x00"), ("dtcfromrole", "XY"),
        ("dtctorole", "x"), ("dtcto", "MRC"), ("dtccreated", "2016030215315"), ("dtccompleted", "20160302156000"),
        ("dtcchecksum", "12|3"), ("dtctestflag", "OPER\n"), ("dtcsendapp", "\x0c"), ("dtcbroadcast", "NO")])
    def test_header_attribute_outside_its_dtc_format(self, reader: FlowFileReader, name: str, value: str) -> None:
        """Every attribute that becomes part of the ZHV or ZPT line is held to its DTC format, and named."""
        events = [event | {name: value} for event in self.kraken(reader)]
        with pytest.raises(EventError, match=f"attribute '{name}'"):
            "".join(render_events(events, reader.definitions))

    def test_wrong_source(self, reader: FlowFileReader) -> None:
        """The source must name the sending participant of the header."""
        events = self.kraken(reader)
        for event in events:
            event["source"] = "urn:mpid:EVIL"
        with pytest.raises(EventError, match="does not name the sending participant"):
            "".join(render_events(events, reader.definitions))


def test_repo_layout() -> None:
    """The examples folder is where the README says."""
    assert (REPO / "examples").is_dir()


class TestEventIds:
    @settings(max_examples=500)
    @given(name=st.text())
    def test_event_id_is_uuid5(self, name: str) -> None:
        """The id made without the UUID object is the RFC 4122 version-5 UUID of the same name."""
        assert event_id_of(name) == str(uuid.uuid5(EVENT_NAMESPACE, name))
