"""The package's architecture as tests: the import-linter contracts in pyproject.toml, no import circle
(lazy imports inside functions count too), and the wheel, built from the tracked files, ships only the product."""

from __future__ import annotations

import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import grimp
import pytest

ROOT = Path(__file__).resolve().parents[2]


def test_import_linter_contracts_are_kept() -> None:
    proc = subprocess.run(
        [str(Path(sys.executable).parent / "lint-imports")], cwd=ROOT, capture_output=True, text=True, timeout=120
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-2000:]
    assert "0 broken" in proc.stdout


def _cycle(graph: grimp.ImportGraph) -> list[str] | None:
    """One import circle among the modules of `graph`, or None (iterative depth-first search)."""
    state: dict[str, int] = {}  # 1: on the current path, 2: done
    for start in sorted(graph.modules):
        if state.get(start):
            continue
        path: list[str] = [start]
        todo = [iter(sorted(graph.find_modules_directly_imported_by(start)))]
        state[start] = 1
        while todo:
            nxt = next(todo[-1], None)
            if nxt is None:
                state[path.pop()] = 2
                todo.pop()
            elif state.get(nxt) == 1:
                return [*path[path.index(nxt) :], nxt]
            elif not state.get(nxt):
                state[nxt] = 1
                path.append(nxt)
                todo.append(iter(sorted(graph.find_modules_directly_imported_by(nxt))))
    return None


def test_no_import_circle_in_the_product() -> None:
    graph = grimp.build_graph("exporter")
    # a package's __init__ importing its own submodules is not a circle between roles
    assert _cycle(graph) is None, " -> ".join(_cycle(graph) or [])


def test_the_cycle_finder_finds_a_circle() -> None:
    graph = grimp.ImportGraph()
    for name in ("a", "b", "c"):
        graph.add_module(name)
    graph.add_import(importer="a", imported="b")
    graph.add_import(importer="b", imported="c")
    assert _cycle(graph) is None
    graph.add_import(importer="c", imported="a")
    assert _cycle(graph) == ["a", "b", "c", "a"]


@pytest.mark.network
def test_the_wheel_contains_the_product_only(tmp_path: Path) -> None:
    # built from a copy of the tracked files: a checkout's build/ or *.egg-info can hold stale modules
    tracked = subprocess.run(["git", "ls-files", "-z"], cwd=ROOT, check=True, capture_output=True).stdout
    source = tmp_path / "source"
    for name in tracked.decode().split("\0"):
        if name and (ROOT / name).is_file():
            (source / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(ROOT / name, source / name)
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "-w", str(tmp_path), str(source)],
        check=True,
        capture_output=True,
        timeout=300,
    )
    (wheel,) = tmp_path.glob("mesh_exporter-*.whl")
    names = zipfile.ZipFile(wheel).namelist()
    modules = {n for n in names if n.endswith(".py")}
    assert modules == {p.relative_to(source).as_posix() for p in (source / "exporter").rglob("*.py")}
    assert not [n for n in names if not n.startswith(("exporter/", "mesh_exporter-"))], names
    assert not [n for n in modules if "sandbox" in n or "meshsim" in n]
    # the mTLS report's templates are package data: without them the HTML page cannot render
    assert {"exporter/mtls/templates/report.html.j2", "exporter/mtls/templates/chart.html.j2"} <= set(names)
