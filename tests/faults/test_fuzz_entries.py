"""Issue 14: hostile entries dropped into the inbound folder, driven through the claim and the inbound chain.

Hypothesis makes names (long, not UTF-8, control characters, names that collide with reports), links (hard links and
symbolic links to files outside the bridge, a symbolic link swapped in after the watcher's check), sizes (an
endless line) and bad files, between honest files. Whatever comes, the chain never raises, writes and changes
nothing outside the bridge's folders, ends every entry archived or quarantined (with a report), and publishes every
honest file. The chain runs here with a publisher that keeps what it is given; the same hostile entries go through
the real daemon and broker in tests/e2e/test_inbound_daemon.py::TestHostileEntries.

Counts: DTN_SOAK=1 (scripts/soak) multiplies the examples tenfold.
"""

from __future__ import annotations

import functools
import json
import os
import shutil
import stat
import tempfile
from dataclasses import dataclass
from pathlib import Path

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from bridge.adapters.ledger import Ledger
from bridge.adapters.spool import REPORT_SUFFIX, Spool
from bridge.dtn.definitions import load_definitions
from bridge.dtn.reader import FlowFileReader
from bridge.dtn.synthetic import synthetic_file
from bridge.events.manifest import MANIFEST_TYPE
from bridge.inbound import InboundPipeline
from bridge.inbound.build import built_messages
from bridge.rules.parse import parse_rules
from bridge.signing import Signer
from tests.conftest import REPO
from tests.fakes import FakePublisher

SOAK = os.environ.get("DTN_SOAK", "") not in ("", "0")
DEFINITIONS = load_definitions(REPO / "flow_definitions")
READER = FlowFileReader(DEFINITIONS)
RULES = parse_rules(None, participant_id="SYNB", participant_role="X", definitions=DEFINITIONS)
SIGNER = Signer.generate()
BAD = b"ZHV|not a flow file|\n"
ENDLESS = b"ZHV|" + b"9" * (1 << 20)  # 1 MiB without a line end (the limit below is 64 KiB)


@dataclass(frozen=True)
class Entry:
    """One thing dropped: `kind` says how, `name` its raw name."""

    kind: str  # honest, bad, endless, hardlink, symlink, swapped, folder
    name: bytes
    seed: int


def _name(raw: bytes) -> bytes:
    """A name the filesystem takes: no '/', no NUL, not '.' or '..', at most 255 bytes."""
    cleaned = raw.replace(b"/", b"_").replace(b"\0", b"_")[:255] or b"x"
    return b"x" + cleaned[1:] if cleaned in (b".", b"..") else cleaned


NAMES = st.one_of(
    st.sampled_from([b"D0275001.txt", b"X", b"X" + REPORT_SUFFIX.encode(), b"X.enc", b"X.1", b"X.error.1.json"]),
    st.binary(min_size=1, max_size=255).map(_name),  # not UTF-8, control characters, anything
    st.integers(min_value=180, max_value=255).map(lambda n: b"L" * n),  # long: the claim name would not fit
    st.text(min_size=1, max_size=80).map(lambda t: _name(t.encode())),  # UTF-8, multi-byte characters
)
ENTRIES = st.lists(st.builds(Entry, st.sampled_from(["honest", "honest", "bad", "endless", "hardlink", "symlink",
                                                     "swapped", "folder"]), NAMES, st.integers(0, 10**6)),
                   min_size=1, max_size=8)


def _snapshot(folder: Path) -> dict[bytes, tuple[int, int, int, bytes]]:
    """Every entry under `folder` by raw path: mode, owner, mtime and content (of regular files). Not the link
    count: the test's own hard links change it."""
    seen: dict[bytes, tuple[int, int, int, bytes]] = {}
    for root, folders, files in os.walk(os.fsencode(folder)):
        for name in folders + files:
            path = os.path.join(root, name)
            details = os.lstat(path)
            content = open(path, "rb").read() if stat.S_ISREG(details.st_mode) else b""  # noqa: SIM115
            seen[path] = (details.st_mode, details.st_uid, details.st_mtime_ns, content)
    return seen


@dataclass
class Installation:
    """The bridge's folders and chain under `root`, with files outside them that links point at."""

    root: Path
    spool: Spool
    pipeline: InboundPipeline
    publisher: FakePublisher

    @property
    def inbound(self) -> bytes:
        return os.fsencode(self.root / "bridge" / "inbound")

    @property
    def outside(self) -> Path:
        return self.root / "outside"


def _installed(root: Path) -> Installation:
    folders = {name: root / "bridge" / name for name in ("inbound", "processing", "archive", "quarantine")}
    for folder in folders.values():
        folder.mkdir(parents=True)
    (root / "outside").mkdir()
    for number in range(3):
        secret = root / "outside" / f"secret{number}.txt"
        secret.write_bytes(f"outside {number}\n".encode())
        secret.chmod(0o600)
    spool = Spool(folders["processing"], folders["archive"], folders["quarantine"])
    publisher = FakePublisher()
    build = functools.partial(built_messages, reader=READER, rules=RULES, sign=SIGNER.signed_json)
    pipeline = InboundPipeline(reader=READER, build=build, sign=SIGNER.signed_json, publisher=publisher,
                               ledger=Ledger(root / "bridge" / "ledger.sqlite3"), spool=spool, rules=RULES)
    return Installation(root, spool, pipeline, publisher)


def _drop(installation: Installation, entry: Entry, number: int) -> bytes:
    """Put `entry` into the inbound folder the way an attacker (or an honest gateway) would; its path."""
    path = installation.inbound + b"/" + entry.name
    if os.path.lexists(path):
        return path  # the name is taken by an entry not claimed yet (a folder): this one is not dropped
    secret = os.fsencode(installation.outside / f"secret{entry.seed % 3}.txt")
    if entry.kind == "honest":
        definition = DEFINITIONS["D0275001"]
        data = "".join(synthetic_file(definition, entry.seed * 100 + number, instances=2)).encode()
        open(path, "wb").write(data)  # noqa: SIM115
    elif entry.kind == "bad":
        open(path, "wb").write(BAD + entry.name)  # noqa: SIM115
    elif entry.kind == "endless":
        open(path, "wb").write(ENDLESS)  # noqa: SIM115
    elif entry.kind == "hardlink":
        os.link(secret, path)
    elif entry.kind == "symlink":
        os.symlink(secret, path)
    elif entry.kind == "swapped":  # a regular file when the watcher looked, a symbolic link when claimed
        open(path, "wb").write(BAD)  # noqa: SIM115
        os.unlink(path)
        os.symlink(secret, path)
    else:
        os.mkdir(path)
    return path


def _settle(installation: Installation, path: bytes) -> str:
    """What the daemon's loop does with one ready path: claim it, then take it to its end."""
    claim = installation.spool.claim(Path(os.fsdecode(path)))
    if claim is None:
        return "left"
    return installation.pipeline.process(claim).outcome


@settings(max_examples=60 * (10 if SOAK else 1), deadline=None, database=None,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(entries=ENTRIES)
def test_hostile_entries_never_stop_the_chain(entries: list[Entry]) -> None:
    root = Path(tempfile.mkdtemp(prefix="dtn-entries-"))
    try:
        installation = _installed(root)
        outside_before = _snapshot(installation.outside)
        honest = 0
        for number, entry in enumerate(entries):
            path = _drop(installation, entry, number)
            outcome = _settle(installation, path)
            if os.path.isdir(path):  # a folder, or an entry whose name a folder holds (not dropped): left alone
                assert outcome == "left"
                continue
            assert not os.path.lexists(path), f"{entry} stayed in the inbound folder"
            if entry.kind == "honest":
                assert outcome == "archived", entry
                honest += 1
            else:
                assert outcome == "quarantined", (entry, outcome)
        # nothing outside the bridge's folders was written, linked away or changed
        assert sorted(os.listdir(root)) == ["bridge", "outside"]
        assert _snapshot(installation.outside) == outside_before
        assert not os.listdir(os.fsencode(installation.spool.processing))
        # every quarantined entry has its own report, and no report took an original's name
        quarantine = installation.spool.quarantine_dir
        names = set(os.listdir(os.fsencode(quarantine)))
        reports = {name for name in names if name.endswith(REPORT_SUFFIX.encode())}
        originals = names - reports
        for name in originals:
            report = quarantine / os.fsdecode(name + REPORT_SUFFIX.encode())
            assert json.loads(report.read_text())["defects"], name
        # every honest file was published: its events and its manifest
        manifests = [json.loads(message.body) for message in installation.publisher.published
                     if json.loads(message.body).get("type") == MANIFEST_TYPE]
        assert len(manifests) == honest
        installation.pipeline.close()
        installation.pipeline.ledger.close()
    finally:
        shutil.rmtree(root)
