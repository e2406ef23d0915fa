"""An active/standby pair's configuration: the two outbound keys, and each daemon's own processing folder (a second
daemon given the same one is refused, naming the key and who holds it)."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from bridge.config import load_config
from bridge.errors import ConfigError
from bridge.service import ensure_folders, hold_processing, topology_for
from tests.conftest import REPO


def config_file(tmp_path: Path, extra: str = "") -> Path:
    path = tmp_path / "bridge.yaml"
    path.write_text(textwrap.dedent(f"""
        watch: {{inbound: var/inbound}}
        spool: {{processing: var/processing, archive: var/archive, quarantine: var/quarantine}}
        state: {{dir: var/state}}
        outbound: {{folder: var/outbound{extra}}}
    """))
    return path


def test_the_pair_keys(tmp_path: Path) -> None:
    config = load_config(config_file(tmp_path, ", single_active_consumer: true, shared_state: /srv/dtn/pair"))
    assert config.outbound.single_active_consumer and config.outbound.shared_state == Path("/srv/dtn/pair")
    assert topology_for(config).outbound_single_active_consumer
    alone = load_config(config_file(tmp_path))
    assert not alone.outbound.single_active_consumer and alone.outbound.shared_state is None
    assert not topology_for(alone).outbound_single_active_consumer


def test_shared_state_needs_single_active_consumer(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as info:
        load_config(config_file(tmp_path, ", shared_state: pair"))
    assert info.value.key == "outbound.shared_state" and "single_active_consumer: true" in info.value.message


def test_a_second_daemon_on_the_same_processing_folder_is_refused(tmp_path: Path) -> None:
    config = load_config(config_file(tmp_path))
    ensure_folders(config)
    holder = subprocess.Popen(  # another daemon process holding the folder
        [sys.executable, "-c", textwrap.dedent(f"""
            import sys
            from bridge.config import load_config
            from bridge.service import hold_processing
            hold_processing(load_config({str(config.source)!r}))
            print("held", flush=True)
            sys.stdin.read()
        """)], cwd=REPO, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout is not None and holder.stdout.readline() == "held\n"
        with pytest.raises(ConfigError) as info:
            hold_processing(config)
        assert info.value.key == "spool.processing"
        assert f"in use by another bridge (pid {holder.pid} on " in info.value.message
    finally:
        holder.communicate("", timeout=30)
    hold_processing(config).release()  # free again once that daemon is gone
