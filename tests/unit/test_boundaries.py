"""The import boundaries of ARCHITECTURE.md, checked by reading every module's imports."""

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


def imported_modules(folder: str) -> list[tuple[str, str]]:
    """(file, module) for every import under ``folder``, relative imports resolved by name only."""
    found = []
    for path in sorted((ROOT / folder).rglob("*.py")):
        tree = ast.parse(path.read_text(), filename=str(path))
        for node in ast.walk(tree):
            if isinstance(node, ast.Import):
                found += [(str(path.relative_to(ROOT)), alias.name) for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                found.append((str(path.relative_to(ROOT)), node.module))
    return found


def offenders(folder: str, forbidden: tuple[str, ...]) -> list[str]:
    return [
        f"{file}: {module}"
        for file, module in imported_modules(folder)
        if any(module == f or module.startswith(f + ".") for f in forbidden)
    ]


def test_gateway_never_imports_core_or_llama():
    assert offenders("rest", ("herd.core", "llama_cpp")) == []


def test_client_package_never_imports_servers():
    assert offenders("clients", ("herd.core", "herd.rest", "llama_cpp", "sanic")) == []


def test_core_knows_no_http():
    assert offenders("core", ("sanic", "herd.rest", "http.server", "aiohttp")) == []


@pytest.mark.parametrize("folder", ["core", "rest", "clients", "scripts"])
def test_only_the_engine_imports_llama_cpp(folder):
    # The bench's raw loop, and the decode timer it and step_accounting.py put into the runner, measure llama.cpp.
    allowed = {"core/runner/engine.py", "core/runner/vision.py", "core/runner/quantize.py", "scripts/bench.py",
               "scripts/decode_timing/sitecustomize.py"}
    found = [f for f in offenders(folder, ("llama_cpp",)) if f.split(":")[0] not in allowed]
    assert found == []


def test_no_relative_imports_cross_packages():
    # Relative imports would hide a crossing from the checks above.
    relative = []
    for folder in ("core", "rest", "clients"):
        for path in (ROOT / folder).rglob("*.py"):
            tree = ast.parse(path.read_text())
            relative += [str(path) for n in ast.walk(tree) if isinstance(n, ast.ImportFrom) and n.level > 0]
    assert relative == []


def test_every_package_is_installed():
    """A wheel holds only the packages pyproject lists: one left out works editable and breaks installed."""
    import tomllib

    setuptools = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]
    on_disk = {
        ".".join((name, *init.parent.relative_to(ROOT / folder).parts))
        for name, folder in setuptools["package-dir"].items()
        for init in (ROOT / folder).rglob("__init__.py")
    }
    assert on_disk - set(setuptools["packages"]) == set()
