"""What `pip install .` puts in site-packages: one import name, `imgbatch`, holding every layer.

The orchestration layers keep the repository's top-level folders (flows/, tasks/,
deployments/) and install as imgbatch.flows, imgbatch.tasks and imgbatch.deployments, so a
user's own `tasks.py` or `cli/` can neither shadow ours nor be shadowed.
"""

from __future__ import annotations

import configparser
import os
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
# Repository folder -> where its files land in the installed package.
INSTALLED_AS = {
    "imgbatch": "imgbatch",
    "flows": "imgbatch/flows",
    "tasks": "imgbatch/tasks",
    "deployments": "imgbatch/deployments",
}
IGNORED = shutil.ignore_patterns("__pycache__", "*.egg-info")


@pytest.fixture(scope="module")
def wheel(tmp_path_factory) -> Path:
    """Built from a copy of the sources: setuptools writes build/ into the tree it builds."""
    src, out = tmp_path_factory.mktemp("src"), tmp_path_factory.mktemp("wheel")
    for name in ("pyproject.toml", "README.md", *INSTALLED_AS):
        copy = shutil.copytree if (REPO / name).is_dir() else shutil.copy2
        copy(REPO / name, src / name, **({"ignore": IGNORED} if copy is shutil.copytree else {}))
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--quiet", "--no-deps", "-w", str(out), str(src)],
        check=True,
        capture_output=True,
        timeout=240,
    )
    (found,) = out.glob("imgbatch-*.whl")
    return found


def test_the_wheel_installs_one_import_name_with_every_source_file(wheel):
    names = zipfile.ZipFile(wheel).namelist()
    top = {n.split("/")[0] for n in names}
    assert {t for t in top if not t.endswith(".dist-info")} == {"imgbatch"}, sorted(top)
    expected = {
        f"{INSTALLED_AS[folder]}/{p.relative_to(REPO / folder).as_posix()}"
        for folder in INSTALLED_AS
        for p in (REPO / folder).rglob("*.py")
        if "__pycache__" not in p.parts
    }
    missing = sorted(expected - set(names))
    assert not missing, f"source files left out of the wheel: {missing}"
    assert "imgbatch/deployments/prefect.yaml" in names


def test_the_console_script_points_into_the_one_package(wheel):
    with zipfile.ZipFile(wheel) as z:
        entry = next(n for n in z.namelist() if n.endswith("entry_points.txt"))
        config = configparser.ConfigParser()
        config.read_string(z.read(entry).decode())
    assert dict(config["console_scripts"]) == {"imgbatch": "imgbatch.cli.main:entry_point"}


def test_the_installed_package_runs_without_the_repository(wheel, tmp_path):
    """Installed elsewhere and imported from outside the checkout: the flows load from the
    installed copy, and the old top-level names are gone."""
    target = tmp_path / "site"
    subprocess.run(
        [sys.executable, "-m", "pip", "install", "--quiet", "--no-deps", "-t", str(target), wheel],
        check=True,
        capture_output=True,
        timeout=120,
    )
    code = (
        "import importlib.util, imgbatch.flows.preprocess as f, imgbatch.deployments.serve\n"
        "print(f.__file__)\n"
        "print([n for n in ('flows', 'tasks', 'cli', 'deployments', 'sampledata')"
        " if importlib.util.find_spec(n)])\n"
    )
    env = {**os.environ, "PYTHONPATH": str(target)}
    proc = subprocess.run(
        [sys.executable, "-c", code], cwd=tmp_path, env=env, capture_output=True, text=True
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    where, leftovers = proc.stdout.splitlines()
    assert where.startswith(str(target)), where
    assert leftovers == "[]"
