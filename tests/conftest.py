"""Shared fixtures: the shipped definitions, the real samples and the shipped examples."""

from __future__ import annotations

from pathlib import Path

import pytest

from bridge.dtn.definitions import DefinitionSet, load_definitions
from bridge.dtn.reader import FlowFileReader

REPO = Path(__file__).resolve().parents[1]
SAMPLES = REPO.parent / "shared" / "dtn-samples"
EXAMPLES = REPO / "examples"


@pytest.fixture(scope="session")
def definitions() -> DefinitionSet:
    return load_definitions(REPO / "flow_definitions")


@pytest.fixture(scope="session")
def reader(definitions: DefinitionSet) -> FlowFileReader:
    return FlowFileReader(definitions)


def sample(name: str) -> Path:
    """A real sample file from ../shared/dtn-samples (CI lays shared/ beside the clone)."""
    matches = sorted(SAMPLES.glob(f"*{name}*"))
    assert matches, f"no sample matching {name!r} in {SAMPLES}"
    return matches[0]
