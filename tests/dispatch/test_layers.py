"""The floors of the house: kit (ground) <- domains <- api <- app (top). No import runs upward,
at module level or inside a function."""

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
DOMAINS = {"dispatch", "matching", "ratings", "settlement", "meters", "scheduling"}
FLOOR = {"kit": 0, **{d: 1 for d in DOMAINS}, "api": 2, "app": 3}


def _imports(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(), filename=str(path))
    found = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found |= {alias.name.split(".")[0] for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.add(node.module.split(".")[0])
    return found & set(FLOOR)


def _modules(package: str) -> list[Path]:
    return sorted(p for p in (ROOT / package).rglob("*.py") if "__pycache__" not in p.parts)


@pytest.mark.parametrize("package", sorted(FLOOR))
def test_no_import_runs_up_a_floor(package: str) -> None:
    upward = [
        f"{path.relative_to(ROOT)} imports {target}"
        for path in _modules(package)
        for target in _imports(path)
        if FLOOR[target] > FLOOR[package]
    ]
    assert upward == []



def _module_name(path: Path) -> str:
    parts = path.relative_to(ROOT).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _targets(node: ast.AST, known: set[str]) -> set[str]:
    """The modules of `known` an import statement loads (`from pkg import mod` loads pkg.mod)."""
    if isinstance(node, ast.Import):
        return {alias.name for alias in node.names} & known
    if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
        found = {f"{node.module}.{alias.name}" for alias in node.names} & known
        return found or ({node.module} & known)
    return set()


def _cycle(graph: dict[str, set[str]]) -> list[str]:
    """One import cycle of the graph, as the modules along it, or []."""
    state: dict[str, str] = {}
    path: list[str] = []

    def visit(module: str) -> list[str]:
        state[module] = "open"
        path.append(module)
        for target in sorted(graph[module]):
            if state.get(target) == "open":
                return [*path[path.index(target):], target]
            if target not in state and (found := visit(target)):
                return found
        state[module] = "done"
        path.pop()
        return []

    for module in sorted(graph):
        if module not in state and (found := visit(module)):
            return found
    return []


@pytest.mark.parametrize("package", sorted(FLOOR))
def test_no_import_cycle_inside_a_package(package: str) -> None:
    """Counting imports inside functions too: a deferred import that dodges a cycle is still one."""
    paths = {_module_name(path): path for path in _modules(package)}
    graph = {module: {target for node in ast.walk(ast.parse(path.read_text(), filename=str(path)))
                      for target in _targets(node, set(paths)) if target != module}
             for module, path in paths.items()}
    assert _cycle(graph) == []


def test_the_cycle_finder_sees_a_deferred_import_cycle() -> None:
    graph = {"meters.ingest": {"meters.rules"}, "meters.rules": {"meters.ingest"}, "meters.models": set()}
    assert _cycle(graph) == ["meters.ingest", "meters.rules", "meters.ingest"]


def _exists(module: str) -> bool:
    path = ROOT.joinpath(*module.split("."))
    return path.with_suffix(".py").is_file() or (path / "__init__.py").is_file()


@pytest.mark.parametrize("package", sorted(FLOOR))
def test_every_house_import_names_a_module_that_exists(package: str) -> None:
    """A deferred import of a module that moved (`dispatch.db` went to `kit.db`) fails only when run."""
    missing = [
        f"{path.relative_to(ROOT)}:{node.lineno} imports {name}"
        for path in _modules(package)
        for node in ast.walk(ast.parse(path.read_text(), filename=str(path)))
        for name in ([a.name for a in node.names] if isinstance(node, ast.Import) else
                     [node.module] if isinstance(node, ast.ImportFrom) and node.module and node.level == 0 else [])
        if name.split(".")[0] in FLOOR and not _exists(name)
    ]
    assert missing == []


def test_every_package_of_the_house_is_installed() -> None:
    """`gasdispatch` runs from the installed packages: one missing from pyproject.toml's list
    (scheduling once was) breaks `scripts/run.sh` while the tests, run from the checkout, pass."""
    import tomllib

    include = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]["packages"]["find"]["include"]
    assert sorted(p for p in FLOOR if f"{p}*" not in include) == []
