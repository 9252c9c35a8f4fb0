"""The code's own checks, run with the suite: types (mypy --strict), the one-way flow
(import-linter), no import cycles between modules, and lint."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import grimp
import pytest

ROOT = Path(__file__).resolve().parent.parent
# Each import name under promptpix, and its folder.
FOLDERS = {
    "gateway": "gateway",
    "transforms": "transforms",
    "generators": "generators",
    "cache": "cache",
    "client": "sdk/python",
}
PACKAGES = tuple(FOLDERS)
BIN = Path(sys.executable).parent

pytestmark = pytest.mark.timeout(600)


def link_tree(where: Path) -> Path:
    """promptpix/gateway -> gateway, and so on: the import names, as folders mypy can read."""
    top = where / "promptpix"
    top.mkdir(parents=True)
    for name, folder in FOLDERS.items():
        (top / name).symlink_to(ROOT / folder, target_is_directory=True)
    return where


def run(*args: str | Path, cwd: Path = ROOT, **env: str) -> subprocess.CompletedProcess[str]:
    import os

    return subprocess.run(
        [str(a) for a in args],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=540,
        env={**os.environ, **env},
    )


def test_types_are_strict(tmp_path: Path) -> None:
    tree = link_tree(tmp_path / "tree")
    packages = [arg for name in PACKAGES for arg in ("-p", f"promptpix.{name}")]
    found = run(
        BIN / "mypy",
        "--config-file",
        ROOT / "pyproject.toml",
        "--cache-dir",
        tmp_path / "mypy-cache",
        *packages,
        cwd=tmp_path,
        MYPYPATH=str(tree),
    )
    assert found.returncode == 0, found.stdout[-6000:] + found.stderr[-2000:]


def test_the_flow_runs_one_way() -> None:
    found = run(BIN / "lint-imports", "--no-cache")
    assert found.returncode == 0, found.stdout[-4000:] + found.stderr[-2000:]
    assert "broken" in found.stdout and "0 broken" in found.stdout


def test_no_import_cycles_between_modules() -> None:
    graph = grimp.build_graph(*(f"promptpix.{name}" for name in PACKAGES), "bench")
    cycles = []
    for module in sorted(graph.modules):
        for imported in graph.find_modules_directly_imported_by(module):
            chain = graph.find_shortest_chain(importer=imported, imported=module)
            if chain is not None:
                cycles.append(" -> ".join((module, *chain)))
    assert not cycles, "\n".join(cycles)


def test_lint_and_format() -> None:
    lint = run(BIN / "ruff", "check", ".")
    assert lint.returncode == 0, lint.stdout[-4000:]
    form = run(BIN / "ruff", "format", "--check", ".")
    assert form.returncode == 0, form.stdout[-4000:]
