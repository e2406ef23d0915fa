"""Fuzzing the inbound side with mutated files: the parser never raises or hangs, and always says what is wrong;
the running daemon settles every mutated file (archived or quarantined with a report) and loses no valid file.

The mutations are byte level (flips, inserted and deleted bytes, NUL/0xFF/bad UTF-8, truncation), line level
(duplicated, deleted, swapped lines) and size level (lines of up to 1 MiB, runs of pipes), applied to a synthetic
file of every shipped flow definition and to the valid real samples.

Counts: DTN_SOAK=1 (scripts/soak) multiplies the examples tenfold and the daemon's files fivefold.
"""

from __future__ import annotations

import json
import os
import random
import signal
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from bridge.dtn.definitions import load_definitions
from bridge.dtn.reader import FileParse, FlowFileReader
from bridge.dtn.synthetic import synthetic_file
from bridge.events.manifest import MANIFEST_TYPE
from bridge.inbound.flowfile import check_file, file_events
from tests.conftest import REPO, samples
from tests.e2e.conftest import Bridge

SOAK = os.environ.get("DTN_SOAK", "") not in ("", "0")
SCALE = 10 if SOAK else 1
VALID_SAMPLES = ["DTC5259515123502080915D0010", "ocdiff_D0155001_a", "ocdiff_D0155001_b",
                 "OVOE1359", "OVOE1429"]  # as tests/events/test_envelope.py
DEFINITIONS = load_definitions(REPO / "flow_definitions")
READER = FlowFileReader(DEFINITIONS)
HANG_SECONDS = 20  # an example still running after this is a hang (the deadline reports slow ones)


def _seeds() -> dict[str, bytes]:
    """The valid files the mutations start from."""
    seeds = {f"{reference}_{seed}": "".join(synthetic_file(DEFINITIONS[reference], seed)).encode()
             for reference in sorted(DEFINITIONS) for seed in (1, 2)}
    seeds.update(zip(VALID_SAMPLES, (path.read_bytes() for path in samples(VALID_SAMPLES)), strict=False))
    return seeds


SEEDS = _seeds()
SEED_NAMES = sorted(SEEDS)


# -- mutations: each takes the bytes and a seeded random.Random, so hypothesis shrinks the (op, seed) list ----------


def _at(data: bytes, rng: random.Random) -> int:
    return rng.randint(0, len(data))


def _lines(data: bytes) -> list[bytes]:
    return data.splitlines(keepends=True) or [b""]


def flip(data: bytes, rng: random.Random) -> bytes:
    if not data:
        return data
    at = rng.randrange(len(data))
    return data[:at] + bytes([data[at] ^ (1 << rng.randrange(8))]) + data[at + 1:]


def insert_bytes(data: bytes, rng: random.Random) -> bytes:
    at = _at(data, rng)
    return data[:at] + rng.randbytes(rng.randint(1, 8)) + data[at:]


def delete_bytes(data: bytes, rng: random.Random) -> bytes:
    at = _at(data, rng)
    return data[:at] + data[at + rng.randint(1, 16):]


SPECIAL = [b"\x00", b"\xff", b"\xfe", b"\xc3", b"\xed\xa0\x80", b"\xf0\x9f\x98", b"\xef\xbb\xbf", b"\x80",
           b"\r", b"\n", b"\r\n", b"|", b"||||", b"\x1c", b"\x85", b"\xe2\x80\xa8", b"\t", b"\x7f"]


def insert_special(data: bytes, rng: random.Random) -> bytes:
    at = _at(data, rng)
    return data[:at] + rng.choice(SPECIAL) + data[at:]


def replace_special(data: bytes, rng: random.Random) -> bytes:
    if not data:
        return data
    at = rng.randrange(len(data))
    return data[:at] + rng.choice(SPECIAL) + data[at + 1:]


def duplicate_line(data: bytes, rng: random.Random) -> bytes:
    lines = _lines(data)
    at = rng.randrange(len(lines))
    lines.insert(rng.randint(0, len(lines)), lines[at])
    return b"".join(lines)


def delete_line(data: bytes, rng: random.Random) -> bytes:
    lines = _lines(data)
    del lines[rng.randrange(len(lines))]
    return b"".join(lines)


def swap_lines(data: bytes, rng: random.Random) -> bytes:
    lines = _lines(data)
    a, b = rng.randrange(len(lines)), rng.randrange(len(lines))
    lines[a], lines[b] = lines[b], lines[a]
    return b"".join(lines)


def truncate(data: bytes, rng: random.Random) -> bytes:
    return data[:_at(data, rng)]


def change_endings(data: bytes, rng: random.Random) -> bytes:
    return data.replace(b"\n", rng.choice([b"\r\n", b"\r", b"\n\n", b""]))


def many_pipes(data: bytes, rng: random.Random) -> bytes:
    at = _at(data, rng)
    return data[:at] + b"|" * rng.choice([2, 40, 1000, 20_000]) + data[at:]


def long_line(data: bytes, rng: random.Random, sizes: tuple[int, ...] = (100, 5_000, 70_000)) -> bytes:
    """A long line inserted, or an existing line made long (a run of one byte, or of random text)."""
    size = rng.choice(sizes)
    filler = rng.choice([b"A" * size, b"9" * size, bytes(rng.choice(b"0123456789|ABZ") for _ in range(min(size, 5000)))
                         * (size // min(size, 5000))])
    lines = _lines(data)
    at = rng.randrange(len(lines))
    if rng.random() < 0.5:
        lines.insert(at, filler + b"\n")
    else:
        lines[at] = lines[at].rstrip(b"\r\n") + filler + b"\n"
    return b"".join(lines)


def huge_line(data: bytes, rng: random.Random) -> bytes:
    return long_line(data, rng, sizes=(1 << 20,))


BYTE_OPS: list[Callable[[bytes, random.Random], bytes]] = [flip, insert_bytes, delete_bytes, insert_special,
                                                           replace_special, truncate]
LINE_OPS: list[Callable[[bytes, random.Random], bytes]] = [duplicate_line, delete_line, swap_lines, change_endings,
                                                           insert_special, flip, truncate]
SIZE_OPS: list[Callable[[bytes, random.Random], bytes]] = [many_pipes, long_line, huge_line, flip, insert_special]
ALL_OPS = BYTE_OPS + LINE_OPS + [many_pipes, long_line]


def mutate(data: bytes, steps: list[tuple[Callable[[bytes, random.Random], bytes], int]]) -> bytes:
    for op, seed in steps:
        data = op(data, random.Random(seed))
    return data


def mutations(ops: list[Callable[[bytes, random.Random], bytes]], most: int = 4) -> st.SearchStrategy[bytes]:
    """A seed file under 1..`most` mutations drawn from `ops`."""
    steps = st.lists(st.tuples(st.sampled_from(ops), st.integers(0, 2**32 - 1)), min_size=1, max_size=most)
    return st.builds(lambda name, chosen: mutate(SEEDS[name], chosen), st.sampled_from(SEED_NAMES), steps)


# -- the property ------------------------------------------------------------------------------------------------


class Hang(Exception):
    pass


@contextmanager
def hang_guard(seconds: int = HANG_SECONDS) -> Iterator[None]:
    """Interrupt a check still running after `seconds` (hypothesis's deadline only reports once an example ends)."""
    def interrupt(_signum: int, _frame: Any) -> None:
        raise Hang(f"check_file still running after {seconds} s")

    previous = signal.signal(signal.SIGALRM, interrupt)
    signal.alarm(seconds)
    try:
        yield
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, previous)


_SCRATCH = Path(tempfile.mkdtemp(prefix="dtn-fuzz-"))


def checked(data: bytes) -> FileParse:
    path = _SCRATCH / "mutated.usr"
    path.write_bytes(data)
    with hang_guard():
        return check_file(path, READER)


def assert_reported(data: bytes) -> FileParse:
    """check_file never raises; the file is ok or has defects, each described in one non-empty line."""
    parse = checked(data)
    assert parse.finished or parse.defects, "the check stopped without finishing or finding a defect"
    if parse.ok:
        return parse
    assert parse.defects, "not ok, yet no defect"
    for line in parse.describe_defects():
        assert isinstance(line, str) and line.strip(), f"an empty defect description in {parse.defects!r}"
        assert "\n" not in line and "\r" not in line, f"a defect description spans lines: {line[:300]!r}"
    for defect in parse.defects:
        assert defect.rule and defect.locate(parse.flow_reference)
    return parse


FAST = settings(deadline=timedelta(seconds=2), database=None, derandomize=False,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])


class TestParserNeverFails:
    """At least 10,000 mutated files in all (4,500 + 3,500 + 1,500 + 500 + the seeds), each checked in full."""

    def test_seeds_are_valid(self) -> None:
        for name, data in SEEDS.items():
            parse = checked(data)
            assert parse.ok, (name, parse.describe_defects())

    @settings(FAST, max_examples=4_500 * SCALE)
    @given(data=mutations(BYTE_OPS))
    def test_byte_mutations(self, data: bytes) -> None:
        assert_reported(data)

    @settings(FAST, max_examples=3_500 * SCALE)
    @given(data=mutations(LINE_OPS))
    def test_line_mutations(self, data: bytes) -> None:
        assert_reported(data)

    @settings(FAST, max_examples=1_500 * SCALE)
    @given(data=mutations(ALL_OPS, most=8))
    def test_mixed_mutations(self, data: bytes) -> None:
        assert_reported(data)

    @settings(FAST, max_examples=500 * SCALE, deadline=timedelta(seconds=5))
    @given(data=mutations(SIZE_OPS, most=2))
    def test_huge_lines_and_pipes(self, data: bytes) -> None:
        assert_reported(data)

    @settings(FAST, max_examples=300 * SCALE)
    @given(data=st.binary(max_size=4096))
    def test_arbitrary_bytes(self, data: bytes) -> None:
        assert_reported(data)


# -- the daemon ----------------------------------------------------------------------------------------------------


def _mutated_corpus(rng: random.Random, count: int) -> list[bytes]:
    """`count` distinct mutated files (no seed unchanged: every mutation here changes the bytes)."""
    corpus: list[bytes] = []
    seen = set(SEEDS.values())
    ops = ALL_OPS + [huge_line]
    while len(corpus) < count:
        steps = [(rng.choice(ops), rng.getrandbits(32)) for _ in range(rng.randint(1, 3))]
        data = mutate(SEEDS[rng.choice(SEED_NAMES)], steps)
        if data not in seen:
            seen.add(data)
            corpus.append(data)
    return corpus


class TestDaemonSettlesMutatedFiles:
    def test_mutated_and_valid_files_interleaved(self, make_bridge: Any, run_service: Any, tmp_path: Path) -> None:
        """~50 mutated files between ~10 valid ones: each file ends archived, or quarantined beside a report with
        its defects; every valid file's events are published."""
        bridge: Bridge = make_bridge(log={"level": "info"})
        rng = random.Random(20240517)
        mutated = _mutated_corpus(rng, 50 * (5 if SOAK else 1))
        valid = [SEEDS[name] for name in rng.sample(SEED_NAMES, 10)]
        valid += ["".join(synthetic_file(DEFINITIONS[rng.choice(sorted(DEFINITIONS))], 1000 + number)).encode()
                  for number in range(40 if SOAK else 0)]
        valid = list(dict.fromkeys(valid))  # distinct contents: a repeat would be archived as a duplicate
        files: list[tuple[str, bytes, bool]] = [(f"mut{n:04d}.usr", data, False) for n, data in enumerate(mutated)]
        files += [(f"ok{n:04d}.usr", data, True) for n, data in enumerate(valid)]
        rng.shuffle(files)
        staging = tmp_path / "staging"
        staging.mkdir()
        running = run_service(bridge)
        started = time.monotonic()
        for name, data, _valid in files:
            (staging / name).write_bytes(data)
            bridge.drop(staging / name)
        bridge.wait_settled(len(files), timeout=120 * (5 if SOAK else 1))
        running.close()
        elapsed = time.monotonic() - started
        archived = {path.name for path in bridge.archived()}
        quarantined = {path.name for path in bridge.quarantined()}
        assert archived | quarantined == {name for name, _data, _valid in files}, "a file was lost or renamed"
        assert not archived & quarantined
        assert list(bridge.folder("processing").iterdir()) == [] and list(bridge.inbound.iterdir()) == []
        expected_ids: set[str] = set()
        for name, data, is_valid in files:
            parse = checked(data)
            if is_valid:
                assert name in archived, f"valid {name} was not archived"
            elif parse.ok:
                assert name in archived, f"{name} still checks valid, yet was quarantined"
            else:
                assert name in quarantined, f"{name} has defects, yet was archived"
                report = json.loads((bridge.folder("quarantine") / f"{name}.error.json").read_text())
                assert report["defects"] and all(defect["text"].strip() for defect in report["defects"])
                assert report["file"] == name and report["size"] == len(data)
            if parse.ok and name in archived:
                expected_ids.update(event["id"] for event in file_events(staging / name, READER, parse))
        published = {event["id"] for _props, event in bridge.captured() if event["type"] != MANIFEST_TYPE}
        assert expected_ids <= published, f"{len(expected_ids - published)} events of valid files not published"
        print(f"{len(files)} files ({len(quarantined)} quarantined) settled in {elapsed:.1f} s")


if __name__ == "__main__":  # pragma: no cover
    pytest.main([__file__, "-q"])
