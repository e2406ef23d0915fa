"""The import boundaries of issue 16: the pure core (dtn, events, signing, rules) and the configuration load no
adapter, broker client, database, watcher, chain or composition root, and the core does not load the configuration;
bridge's import graph has no circle; worker processes never compose from the configuration themselves.

Each import runs in a fresh interpreter, so what another test imported cannot hide a dependency; the import graph is
read from the sources with `ast`."""

from __future__ import annotations

import ast
import json
import subprocess
import sys

import pytest

from tests.conftest import REPO

#: Never loaded by the pure modules: the edges (adapters, service) and what only they should use.
EDGES = ("pika", "sqlite3", "watchdog", "bridge.adapters", "bridge.service", "bridge.inbound", "bridge.outbound")
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


def import_graph() -> dict[str, set[str]]:
    """bridge's modules -> the bridge modules they import at module level, read with `ast` (imports under
    `if TYPE_CHECKING:` and inside functions are not run at import, so they cannot close a circle)."""
    root = REPO / "bridge"
    modules = {".".join(path.relative_to(REPO).with_suffix("").parts).removesuffix(".__init__"): path
               for path in root.rglob("*.py")}
    graph: dict[str, set[str]] = {}
    for name, path in modules.items():
        package = name if path.name == "__init__.py" else name.rpartition(".")[0]
        targets: set[str] = set()
        for node in ast.parse(path.read_text(), str(path)).body:
            if isinstance(node, ast.Import):
                targets.update(alias.name for alias in node.names)
            elif isinstance(node, ast.ImportFrom):
                base = node.module or ""
                if node.level:  # relative: from the package, one level up per extra dot
                    parts = package.split(".")
                    base = ".".join([*parts[:len(parts) - node.level + 1], *filter(None, [base])])
                for alias in node.names:  # `from package import module` imports that module
                    targets.add(f"{base}.{alias.name}" if f"{base}.{alias.name}" in modules else base)
        graph[name] = {target for target in targets if target in modules and target != name}
    return graph


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components of more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    found: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        for target in graph[node]:
            if target not in index:
                visit(target)
                low[node] = min(low[node], low[target])
            elif target in stack:
                low[node] = min(low[node], index[target])
        if low[node] == index[node]:
            component = []
            while (member := stack.pop()) != node:
                component.append(member)
            if component:
                found.append(sorted([node, *component]))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return found


def test_the_import_graph_is_read() -> None:
    """The graph is not empty-handed: known edges are in it, and a circle made up is found."""
    graph = import_graph()
    assert "bridge.inbound.loop" in graph["bridge.service"]
    assert "bridge.adapters.processes" in graph["bridge.service"]
    assert "bridge.ports" in graph["bridge.inbound.workers"]
    assert cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]


def test_no_import_circles_in_bridge() -> None:
    """Issue 16: no module imports, through others, a module that imports it (the worker <-> service circle)."""
    assert cycles(import_graph()) == []


WORKERS = ("bridge/adapters/processes.py", "bridge/inbound/workers.py", "bridge/outbound/workers.py")


def imported_anywhere(path: str) -> set[str]:
    """Every module a file names in an import, at module level or inside a function."""
    names: set[str] = set()
    for node in ast.walk(ast.parse((REPO / path).read_text(), path)):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module:
            names.add(node.module)
    return names


@pytest.mark.parametrize("path", WORKERS)
def test_no_worker_imports_the_composition_root(path: str) -> None:
    """Workers get plain values from the composition root; they never compose again from the configuration (the
    circle adapters/worker.py <-> service.py, closed by imports inside functions)."""
    assert under(sorted(imported_anywhere(path)), ("bridge.service", "bridge.config")) == []
    assert under(loaded_by(path.removesuffix(".py").replace("/", ".")), ("bridge.service",)) == []


CHAINS = ("bridge.inbound", "bridge.outbound")


def adapter_imports_of_chains() -> dict[str, set[str]]:
    graph = import_graph()
    found = {name: set(under(sorted(targets), ("bridge.adapters",))) for name, targets in graph.items()
             if under([name], CHAINS)}
    return {name: targets for name, targets in found.items() if targets}


def test_chains_import_no_concrete_adapter() -> None:
    """The chains talk to the edges only through bridge.ports (the ledger, the spool and outbox, the watcher, the
    broker, worker processes); the composition root hands them the adapters."""
    assert adapter_imports_of_chains() == {}
