"""The import boundaries of issue 16: the pure core (dtn, events, signing, rules) and the configuration load no
adapter, broker client, database, watcher or composition root, and the core does not load the configuration.

Each import runs in a fresh interpreter, so what another test imported cannot hide a dependency."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from tests.conftest import REPO

#: Never loaded by the pure modules: the edges (adapters, service) and what only they should use.
EDGES = ("pika", "sqlite3", "watchdog", "bridge.adapters", "bridge.service", "bridge.inbound.flowfile")
CORE = ("bridge.dtn", "bridge.events", "bridge.signing", "bridge.rules")
PURE = (*CORE, "bridge.config", "bridge.schema")


def loaded_by(module: str) -> list[str]:
    """The modules importing `module` loads, in a fresh interpreter."""
    code = f"import json, sys, {module}; print(json.dumps(sorted(sys.modules)))"
    result = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, check=True,
                            timeout=60)
    names: list[str] = json.loads(result.stdout)
    return names


def under(names: list[str], packages: tuple[str, ...]) -> list[str]:
    return [name for name in names if any(name == p or name.startswith(f"{p}.") for p in packages)]


@pytest.mark.parametrize("module", PURE)
def test_pure_modules_load_no_edge(module: str) -> None:
    assert under(loaded_by(module), EDGES) == []


@pytest.mark.parametrize("module", CORE)
def test_core_does_not_load_the_configuration(module: str) -> None:
    """The core gets its settings as values from the composition root; `rules:` is validated with bridge.schema."""
    assert under(loaded_by(module), ("bridge.config",)) == []


def test_the_check_sees_an_edge() -> None:
    """The helper is not blind: the composition root does load the edges."""
    assert {"pika", "bridge.adapters"} <= set(under(loaded_by("bridge.service"), EDGES))
