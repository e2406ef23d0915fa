"""The build worker process: what happens when it dies, when its reader stops early, and when the daemon dies."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from unittest import mock

import orjson
import pytest

from bridge.adapters.processes import ChildProcess
from bridge.adapters.spool import sha256_of
from bridge.config import BridgeConfig, load_config
from bridge.dtn.definitions import DefinitionSet
from bridge.dtn.reader import FlowFileReader
from bridge.dtn.synthetic import synthetic_file
from bridge.dtn.valid import ValidFile
from bridge.errors import WorkerError
from bridge.inbound.build import built_messages
from bridge.inbound.flowfile import check_file
from bridge.inbound.workers import BuildWorker
from bridge.rules import parse_rules
from bridge.service import build_values
from bridge.signing import Signer, TrustStore
from tests.conftest import EXAMPLES, REPO
from tests.helpers import unsigned, wait_until


def bridge_config(tmp_path: Path) -> BridgeConfig:
    path = tmp_path / "bridge.yaml"
    path.write_text(json.dumps({"participant": {"id": "SYNB", "role": "X"},
                                "flows": {"definitions": str(REPO / "flow_definitions")},
                                "rules": {"addressee": {"enforce": False}},
                                "log": {"level": "warning", "format": "json"}}))
    return load_config(path)


SIGNER = Signer.generate()


@pytest.fixture(scope="module")
def worker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[BuildWorker]:
    """One build worker for the module, as the daemon keeps one for every file: each test leaves it serving (a
    test that ends or kills its processes checks that the next file gets new ones), and its start, seconds on a
    loaded machine, is paid once."""
    started = BuildWorker(build_values(bridge_config(tmp_path_factory.mktemp("worker")), SIGNER), spawn=ChildProcess)
    started.start()
    yield started
    started.close()


@pytest.fixture
def big_file(tmp_path: Path, definitions: DefinitionSet) -> Path:
    """Far more than a pipe holds: the worker is still writing when the reader stops."""
    path = tmp_path / "D0275001-big.txt"
    path.write_text("".join(synthetic_file(definitions["D0275001"], 3, instances=2000, fanout=1)))
    return path


def job(path: Path, reader: FlowFileReader) -> tuple[Path, ValidFile, str]:
    return path, check_file(path, reader).valid(), sha256_of(path)


def pid_of(worker: BuildWorker) -> int:
    pid = worker.pid
    assert pid is not None
    return pid


def interrupted(worker: BuildWorker, big_file: Path, reader: FlowFileReader, signum: int, error: str,
                silence: float = 120.0) -> int:
    """Signal the worker mid-file: the rest of the file raises WorkerError; the next file gets a new worker.
    `silence`: how long the daemon waits for a word, while the rest of the file is read (not for the next worker's
    start, which may take seconds on a loaded machine)."""
    messages = worker(*job(big_file, reader))
    next(messages)
    first = pid_of(worker)
    os.kill(first, signum)
    with pytest.raises(WorkerError, match=error), mock.patch("bridge.adapters.processes.SILENCE", silence):
        for _ in messages:
            pass
    assert len(list(worker(*job(EXAMPLES / "D0010002.txt", reader)))) == 2 and pid_of(worker) != first
    return first


def test_a_killed_worker_raises_and_the_next_file_gets_a_new_one(worker: BuildWorker, big_file: Path,
                                                                 reader: FlowFileReader) -> None:
    interrupted(worker, big_file, reader, signal.SIGKILL, "ended unexpectedly")


@pytest.mark.parametrize("closed", [True, False], ids=["closed", "abandoned"])
def test_a_file_left_half_read_never_leaks_into_the_next(worker: BuildWorker, big_file: Path,
                                                         reader: FlowFileReader, closed: bool) -> None:
    """The publisher failed and stopped taking a file's messages, closing their iterator or (kept alive by a
    traceback) not: either way the next file gets its own messages only, never the rest of the first."""
    messages = worker(*job(big_file, reader))
    taken = [next(messages) for _ in range(10)]
    first = pid_of(worker)
    if closed:
        messages.close()
        assert worker.pid is None  # ended, not drained
    again = list(worker(*job(EXAMPLES / "D0010002.txt", reader)))
    assert {message.routing_key for message in again} == {"inbound.D0010002.SYNA.SYNB"}
    assert len(again) == 2 and len(taken) == 10 and pid_of(worker) != first
    messages.close()  # the abandoned iterator, collected at last, must not end the new worker
    assert len(list(worker(*job(EXAMPLES / "D0010002.txt", reader)))) == 2


def test_the_worker_signs_with_the_daemons_key(worker: BuildWorker, reader: FlowFileReader) -> None:
    """The key crosses the pipe, not the file system: what the worker signs verifies with the daemon's public key,
    and is what the daemon's own build stage makes: the same canonical events, byte for byte (ES256 signatures of one
    event differ)."""
    path, valid, sha256 = job(EXAMPLES / "D0275001.txt", reader)
    trust = TrustStore.from_jwks(SIGNER.public_jwks())
    rules = parse_rules({"addressee": {"enforce": False}}, participant_id="SYNB", participant_role="X",
                        definitions=reader.definitions)
    here = [message.body for message in built_messages(path, valid, sha256, reader=reader, rules=rules,
                                                         sign=SIGNER.signed_json)]
    there = [message.body for message in worker(path, valid, sha256)]
    assert [unsigned(body) for body in there] == [unsigned(body) for body in here] and len(there) == 2
    for body in there:
        assert trust.verify(orjson.loads(body)).kid == SIGNER.kid


def test_a_missing_file_is_an_error_not_a_hang(worker: BuildWorker, tmp_path: Path, reader: FlowFileReader) -> None:
    path, valid, sha256 = job(EXAMPLES / "D0010002.txt", reader)
    with pytest.raises(RuntimeError, match="FileNotFoundError"):
        list(worker(tmp_path / "gone.txt", valid, sha256))
    assert len(list(worker(path, valid, sha256))) == 2  # the same worker carries on


@pytest.mark.parametrize("role", ["build", "check"])
def test_the_worker_ends_with_the_daemon(tmp_path: Path, role: str) -> None:
    """kill -9 of the daemon: the worker (the inbound build worker, or an outbound check worker, whose pipe is read
    by a thread of its own) reads the end of its pipe and exits, leaving no orphan."""
    config = bridge_config(tmp_path)
    (tmp_path / "trust.jwks.json").write_text(json.dumps(Signer.generate().public_jwks()))
    started = ("BuildWorker(build_values(config, Signer.generate()), spawn=ChildProcess)" if role == "build"
               else f"CheckWorkers(check_values(replace(config, signing=SigningConfig(trust=Path({str(tmp_path)!r}) / "
                    "'trust.jwks.json'))), 1, spawn=ChildProcess)")
    script = (
        "import sys, time\n"
        "from dataclasses import replace\n"
        "from pathlib import Path\n"
        "from bridge.adapters.processes import ChildProcess\n"
        "from bridge.inbound.workers import BuildWorker\n"
        "from bridge.outbound.workers import CheckWorkers\n"
        "from bridge.service import build_values, check_values\n"
        "from bridge.config import SigningConfig, load_config\n"
        "from bridge.signing import Signer\n"
        f"config = load_config({str(config.source)!r})\n"
        f"worker = {started}\n"
        "worker.start()\n"
        "if isinstance(worker, CheckWorkers):  # serving: it answers\n"
        "    from bridge.ports import Delivery\n"
        "    worker.submit(Delivery(b'not json', {}, None, 'k', False, 1))\n"
        "    assert worker.take(drain=True)[0][1].outcome.code == 'not_json'\n"
        "print(worker.pid if hasattr(worker, 'pid') else worker._children[0].pid, flush=True)\n"
        "time.sleep(120)  # the scenario: a daemon that lives until the test kills it\n"
    )
    daemon = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, cwd=REPO)
    assert daemon.stdout is not None
    worker_pid = int(daemon.stdout.readline())
    daemon.kill()
    daemon.wait()

    def gone() -> bool:
        try:
            os.kill(worker_pid, 0)
            state = Path(f"/proc/{worker_pid}/stat").read_text().split(")")[-1].split()[0]
        except (ProcessLookupError, FileNotFoundError):
            return True
        return state == "Z"  # exited; reaped by init in time

    wait_until(gone, 20, f"worker {worker_pid} outlived its daemon", interval=0.1)


def test_sigterm_to_the_whole_group_does_not_cut_a_file_short(worker: BuildWorker, big_file: Path,
                                                             reader: FlowFileReader) -> None:
    """systemd or a terminal may signal every process: the daemon drains the file in hand, so the worker goes on."""
    messages = worker(*job(big_file, reader))
    next(messages)
    os.kill(pid_of(worker), signal.SIGTERM)
    assert 1 + sum(1 for _ in messages) == 2000


def test_a_stuck_worker_is_ended_and_replaced(worker: BuildWorker, big_file: Path, reader: FlowFileReader) -> None:
    """A worker that stops answering (here: SIGSTOP) is not waited for forever: WorkerError, then a new worker."""
    stuck = interrupted(worker, big_file, reader, signal.SIGSTOP, "sent nothing", silence=1.0)
    assert not Path(f"/proc/{stuck}").exists() or Path(f"/proc/{stuck}/stat").read_text().split()[2] == "Z"


def test_the_signing_key_is_not_in_the_values_repr(tmp_path: Path) -> None:
    """The build worker's values carry the key to the child; a log line or a traceback showing them must not."""
    values = build_values(bridge_config(tmp_path), SIGNER)
    assert b"PRIVATE KEY" in values.key and "PRIVATE KEY" not in repr(values) and "key=" not in repr(values)
