"""The floors of the house: kit (ground) <- domains <- api <- app (top). No import runs upward,
at module level or inside a function."""

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
DOMAINS = {"dispatch", "matching", "ratings", "settlement", "meters"}
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

