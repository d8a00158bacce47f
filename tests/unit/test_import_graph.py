"""The package's modules import each other without a circle: an import inside a function is for
loading late (the command line's start, an executor's), never to dodge a circle that a top-level
import would make; and every module imports on its own, first, in a fresh interpreter."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[2] / "runner" / "optuna_spark"


def _module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


MODULES = {_module_name(p): p for p in sorted(PACKAGE.rglob("*.py"))}


def _imports(node: ast.AST, importer: str) -> set[str]:
    """The package's modules that `node` imports (`from optuna_spark.x import y` counts
    optuna_spark.x, and optuna_spark.x.y when that is a module)."""
    out: set[str] = set()
    for sub in ast.walk(node):
        if isinstance(sub, ast.ImportFrom) and sub.module and sub.module.startswith("optuna_spark"):
            submodules = {f"{sub.module}.{a.name}" for a in sub.names} & set(MODULES)
            out.update(submodules)
            if len(submodules) < len(sub.names):  # a name defined in the module itself
                out.add(sub.module)
        elif isinstance(sub, ast.Import):
            out.update(a.name for a in sub.names if a.name.startswith("optuna_spark"))
    return {m for m in out if m in MODULES and m != importer}


def _graph() -> tuple[dict[str, set[str]], dict[str, set[str]]]:
    top: dict[str, set[str]] = {}
    late: dict[str, set[str]] = {}
    for name, path in MODULES.items():
        tree = ast.parse(path.read_text(encoding="utf-8"))
        top[name] = set()
        late[name] = set()
        for stmt in tree.body:
            if isinstance(stmt, (ast.Import, ast.ImportFrom)):
                top[name] |= _imports(stmt, name)
            elif isinstance(stmt, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
                late[name] |= _imports(stmt, name)
        # a package's module imports its parent packages' __init__ first
        top[name] |= {p for p in ("optuna_spark",) if name != p and name.startswith("optuna_spark.")} - {name}
    return top, late


def _reach(top: dict[str, set[str]], start: str) -> set[str]:
    seen: set[str] = set()
    todo = [start]
    while todo:
        for nxt in top.get(todo.pop(), ()):
            if nxt not in seen:
                seen.add(nxt)
                todo.append(nxt)
    return seen


def test_the_top_level_imports_make_no_circle() -> None:
    top, _ = _graph()
    top = {k: v - {"optuna_spark"} for k, v in top.items()}  # the package's __init__ imports its API last
    circles = sorted(m for m in top if m in _reach(top, m))
    assert not circles, f"modules on an import circle: {circles}"


def test_no_import_inside_a_function_dodges_a_circle() -> None:
    top, late = _graph()
    top = {k: v - {"optuna_spark"} for k, v in top.items()}
    dodges = sorted(f"{importer} -> {imported}" for importer, targets in late.items() for imported in targets
                    if importer in _reach(top, imported) and importer != "optuna_spark")
    assert not dodges, f"imports inside functions that would close a circle at the top level: {dodges}"


@pytest.mark.parametrize("module", sorted(m for m in MODULES if not m.endswith("__main__")))
def test_each_module_imports_first_and_alone(module: str) -> None:
    proc = subprocess.run([sys.executable, "-c", f"import {module}"], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr[-2000:]


def test_the_version_is_pyprojects() -> None:
    import tomllib

    from optuna_spark import __version__

    pyproject = tomllib.loads((PACKAGE.parents[1] / "pyproject.toml").read_text(encoding="utf-8"))
    assert __version__ == pyproject["project"]["version"]
