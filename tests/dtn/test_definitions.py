"""Where flow definitions come from (bridge/dtn/definitions.py): the ones shipped inside the package, read through
importlib.resources, and folders of one's own that take precedence over them."""

from __future__ import annotations

from importlib.resources import files
from pathlib import Path

import pytest

from bridge.dtn.definitions import default_definitions_dir, load_definitions
from bridge.errors import FlowDefinitionError
from tests.conftest import REPO

SHIPPED = sorted(path.stem for path in (REPO / "flow_definitions").glob("*.yaml"))


def renamed(folder: Path, reference: str, name: str) -> Path:
    """A copy of the shipped definition of `reference` in `folder`, its name changed to `name`."""
    folder.mkdir(parents=True, exist_ok=True)
    text = (REPO / "flow_definitions" / f"{reference}.yaml").read_text(encoding="utf-8")
    lines = [f"name: {name}" if line.startswith("name: ") else line for line in text.splitlines()]
    path = folder / f"{reference}.yaml"
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def test_shipped_definitions_are_package_resources() -> None:
    """Without folders, the definitions are the package's own resource `bridge/flow_definitions` (a link to the
    repository's flow_definitions/, their source, in a checkout; the files themselves in a wheel)."""
    assert default_definitions_dir() == Path(str(files("bridge") / "flow_definitions")).resolve()
    assert (REPO / "bridge" / "flow_definitions").resolve() == REPO / "flow_definitions"
    shipped = load_definitions()
    assert list(shipped) == SHIPPED and len(SHIPPED) == 207
    assert shipped.path_of("D0010002") == REPO / "flow_definitions" / "D0010002.yaml"


def test_a_folder_takes_precedence_over_the_shipped_definitions(tmp_path: Path) -> None:
    """A folder's definition replaces the shipped one of the same flow version; a new version is added; every
    other shipped definition stays."""
    mine = renamed(tmp_path / "mine", "D0010002", "Meter Readings (ours)")
    (tmp_path / "mine" / "D9999001.yaml").write_text("flow: D9999\nversion: '001'\nname: ours\ngroups:\n"
                                                    "  - {code: '001', key: a, name: A, parent: null, range: '1-*',"
                                                    " items: [{ref: J0003, key: mpan_core, name: MPAN Core,"
                                                    " format: NUM(13), presence: mandatory}]}\n")
    definitions = load_definitions(tmp_path / "mine")
    assert definitions["D0010002"].name == "Meter Readings (ours)" and definitions.path_of("D0010002") == mine
    assert definitions["D9999001"].name == "ours"
    assert sorted(definitions) == sorted([*SHIPPED, "D9999001"])
    assert definitions.path_of("D0275001").parent == REPO / "flow_definitions"


def test_the_first_folder_wins(tmp_path: Path) -> None:
    """Several folders: for a flow version in more than one, the first given wins (as on a search path)."""
    renamed(tmp_path / "first", "D0010002", "first")
    renamed(tmp_path / "second", "D0010002", "second")
    renamed(tmp_path / "second", "D0036001", "second only")
    definitions = load_definitions([tmp_path / "first", str(tmp_path / "second")])
    assert definitions["D0010002"].name == "first"
    assert definitions["D0036001"].name == "second only"
    assert load_definitions([tmp_path / "second", tmp_path / "first"])["D0010002"].name == "second"


def test_a_missing_folder_is_named(tmp_path: Path) -> None:
    with pytest.raises(FlowDefinitionError, match="no such folder of flow definitions") as info:
        load_definitions([tmp_path / "absent"])
    assert str(tmp_path / "absent") in str(info.value)
