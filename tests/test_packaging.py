"""What the distribution declares: the licence, the pinned versions, the package data. (The built wheel itself is
installed and run outside the checkout by scripts/smoke-wheel, which scripts/test runs after the whole suite.)"""

from __future__ import annotations

import re
import tomllib
from importlib.metadata import version
from pathlib import Path

from tests.conftest import REPO

PYPROJECT = tomllib.loads((REPO / "pyproject.toml").read_text(encoding="utf-8"))


def _name(requirement: str) -> str:
    return re.split(r"[<>=!~ \[;]", requirement, maxsplit=1)[0].lower().replace("_", "-")


def _pins() -> dict[str, str]:
    lines = (REPO / "constraints.txt").read_text(encoding="utf-8").splitlines()
    return {_name(line): line.split("==", 1)[1] for line in lines if line and not line.startswith("#")}


def test_licence_file_matches_the_declared_licence() -> None:
    """pyproject.toml says Apache-2.0 and ships LICENSE; LICENSE is that licence's text."""
    project = PYPROJECT["project"]
    assert project["license"] == "Apache-2.0" and project["license-files"] == ["LICENSE"]
    text = (REPO / "LICENSE").read_text(encoding="utf-8")
    assert "Apache License" in text and "Version 2.0, January 2004" in text and "END OF TERMS AND CONDITIONS" in text


def test_constraints_pin_every_dependency_to_the_tested_version() -> None:
    """constraints.txt pins (==) every runtime and test dependency, at the version installed here: ensure-venv
    installs with it, so the suite runs on exactly those versions; the project itself is not in it."""
    pins = _pins()
    project = PYPROJECT["project"]
    wanted = {_name(r) for r in project["dependencies"] + project["optional-dependencies"]["test"]}
    assert wanted <= set(pins), f"not pinned: {sorted(wanted - set(pins))}"
    assert "dtn-bridge" not in pins
    assert {name: version(name) for name in wanted} == {name: pins[name] for name in wanted}


def test_package_data_ships_every_definition() -> None:
    """The package data globs cover every file of flow_definitions/ (generated and curated/), reached through the
    package's link bridge/flow_definitions; a new subfolder there needs its glob, or the wheel would lack it."""
    globs = PYPROJECT["tool"]["setuptools"]["package-data"]["bridge"]
    covered = {path for pattern in globs for path in (REPO / "bridge").glob(pattern)}
    files = {path for path in (REPO / "bridge" / "flow_definitions").rglob("*") if path.is_file()}
    assert files and files <= covered
    assert (REPO / "bridge" / "flow_definitions").is_symlink()
    assert (REPO / "bridge" / "flow_definitions").readlink() == Path("../flow_definitions")
