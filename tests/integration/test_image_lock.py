"""The image's dependency lock, proven as far as a machine without a Docker engine allows: it pins every
dependency of pyproject.toml with hashes, and the Dockerfile's install steps, run in a clean virtualenv
from PyPI alone (no local wheel caches or indexes), give a working `exporter`."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest
from packaging.requirements import Requirement

from exporter import __version__

ROOT = Path(__file__).parents[2]
LOCK = ROOT / "requirements.lock"


def _name(requirement: str) -> str:
    """The normalised project name of a PEP 508 requirement."""
    match = re.match(r"[A-Za-z0-9][A-Za-z0-9._-]*", requirement.strip())
    assert match, requirement
    return re.sub(r"[-_.]+", "-", match.group(0)).lower()


def locked() -> dict[str, tuple[str, list[str]]]:
    """name → (version, hashes) of each `name==version` entry of the lock."""
    entries: dict[str, tuple[str, list[str]]] = {}
    current = ""
    for line in LOCK.read_text().splitlines():
        if line.strip().startswith("#") or not line.strip():
            continue
        if not line.startswith(" "):
            requirement = line.split(";")[0].rstrip(" \\")
            assert re.fullmatch(r"[A-Za-z0-9._-]+==[A-Za-z0-9.!+_-]+", requirement), line
            current = _name(requirement)
            entries[current] = (requirement.split("==")[1], [])
        elif "--hash=sha256:" in line:
            entries[current][1].append(line.strip())
    return entries


def test_lock_pins_every_dependency_with_hashes() -> None:
    entries = locked()
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    for text in project["dependencies"]:
        requirement = Requirement(text)
        name = _name(requirement.name)
        assert name in entries, f"{text} is not in requirements.lock: run `make lock`"
        assert requirement.specifier.contains(entries[name][0]), f"{text} excludes the locked {entries[name][0]}"
    assert all(hashes for _, hashes in entries.values()), [n for n, (_, h) in entries.items() if not h]
    assert "make lock" in LOCK.read_text().splitlines()[1]  # the header says how to regenerate it


@pytest.mark.network
def test_dockerfile_install_steps_work_in_a_clean_virtualenv(tmp_path: Path) -> None:
    # The build context, as .dockerignore lets it through and the Dockerfile copies it
    context = tmp_path / "context"
    context.mkdir()
    for name in ("pyproject.toml", "README.md", "requirements.lock"):
        shutil.copy(ROOT / name, context / name)
    shutil.copytree(ROOT / "exporter", context / "exporter", ignore=shutil.ignore_patterns("__pycache__"))
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, timeout=120)
    pip = [str(venv / "bin" / "python"), "-m", "pip"]
    # PyPI only, like a docker build: no pip.conf, no local wheel directories or indexes
    env = {k: v for k, v in os.environ.items() if not k.startswith("PIP_") and k != "VIRTUAL_ENV"}
    env.update(PIP_CONFIG_FILE=os.devnull, PIP_DISABLE_PIP_VERSION_CHECK="1", PIP_NO_CACHE_DIR="1")
    if os.environ.get("PIP_CERT"):
        env["PIP_CERT"] = os.environ["PIP_CERT"]  # a TLS-inspecting proxy's CA, where there is one

    def run(*args: str) -> subprocess.CompletedProcess[str]:
        result = subprocess.run(args, cwd=context, env=env, capture_output=True, text=True, timeout=480)
        assert result.returncode == 0, f"{' '.join(args)}\n{result.stdout[-3000:]}\n{result.stderr[-3000:]}"
        return result

    # the Dockerfile's install steps, verbatim
    run(*pip, "install", "--require-hashes", "--no-deps", "--only-binary=:all:", "-r", "requirements.lock")
    run(*pip, "install", "--no-deps", "./")
    run(*pip, "check")  # with --no-deps above, this proves the lock holds every transitive dependency
    run(*pip, "uninstall", "--yes", "pip", "setuptools")  # nothing at run time may need them
    assert not list((venv / "lib").glob("python3*/site-packages/setuptools"))
    version = run(str(venv / "bin" / "exporter"), "--version")
    assert version.stdout.strip() == f"exporter {__version__}"
    # --version builds the parser, which imports every command's module; the daemon's modules too
    modules = "exporter.cli, exporter.export.daemon, exporter.kube.lease, exporter.mtls.render, exporter.rollout.engine"
    run(str(venv / "bin" / "python"), "-c", f"import {modules}")
