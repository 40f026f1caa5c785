"""The core library never imports Prefect (docs/ARCHITECTURE.md, "Layers")."""

import ast
import pkgutil
import subprocess
import sys
from pathlib import Path

import imgbatch


def test_importing_every_core_module_leaves_prefect_out():
    modules = [m.name for m in pkgutil.iter_modules(imgbatch.__path__, "imgbatch.")]
    assert "imgbatch.images" in modules and "imgbatch.assemble" in modules
    code = (
        "import importlib, sys\n"
        f"for m in {modules!r}: importlib.import_module(m)\n"
        "bad = sorted(k for k in sys.modules if k == 'prefect' or k.startswith('prefect.'))\n"
        "print(bad)\n"
        "sys.exit(1 if bad else 0)\n"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert proc.returncode == 0, f"prefect imported by the core: {proc.stdout} {proc.stderr}"


REPO = Path(__file__).resolve().parents[2]
# Which top-level packages each layer may import (docs/ARCHITECTURE.md, "Layers").
MAY_IMPORT = {
    "imgbatch": {"imgbatch"},
    "tasks": {"imgbatch", "tasks"},
    "flows": {"imgbatch", "tasks", "flows"},
    "cli": {"imgbatch", "flows", "cli", "sampledata"},
    "deployments": {"flows", "deployments"},
    "sampledata": {"imgbatch", "sampledata"},
}


def project_imports(path: Path) -> set[str]:
    """Project modules a file imports (any depth: lazy imports count too)."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        names = []
        if isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names = [node.module]
        found.update(n for n in names if n.split(".")[0] in MAY_IMPORT)
    return found


def test_imports_point_one_way():
    wrong = []
    for layer, allowed in MAY_IMPORT.items():
        for path in sorted((REPO / layer).rglob("*.py")):
            bad = {m for m in project_imports(path) if m.split(".")[0] not in allowed}
            wrong += [f"{path.relative_to(REPO)} imports {m}" for m in sorted(bad)]
    assert not wrong, wrong


def test_no_import_cycle_in_the_core():
    graph = {
        f"imgbatch.{p.stem}": {m for m in project_imports(p) if m.startswith("imgbatch.")}
        for p in (REPO / "imgbatch").glob("*.py")
    }

    def cycle_from(node: str, path: list[str]) -> list[str] | None:
        if node in path:
            return path[path.index(node) :] + [node]
        for nxt in sorted(graph.get(node, ())):
            if found := cycle_from(nxt, [*path, node]):
                return found
        return None

    cycles = [c for m in sorted(graph) if (c := cycle_from(m, []))]
    assert not cycles, cycles[0]


def test_the_cli_modules_import_no_prefect_pandas_or_storage_client():
    modules = [m.name for m in pkgutil.iter_modules([str(REPO / "cli")], "cli.")]
    assert "cli.main" in modules and "cli.preprocess" in modules
    code = (
        "import importlib, sys\n"
        f"for m in {modules!r}: importlib.import_module(m)\n"
        "heavy = ('prefect', 'pandas', 'google.cloud.storage')\n"
        "print(sorted(k for k in sys.modules if k in heavy))\n"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO)
    assert proc.returncode == 0 and proc.stdout.strip() == "[]", proc.stdout + proc.stderr


def test_every_benchmark_module_imports():
    """The README quotes their tables: a rename in the code must not leave one broken."""
    modules = [m.name for m in pkgutil.iter_modules([str(REPO / "benchmarks")], "benchmarks.")]
    assert "benchmarks.e2e" in modules and "benchmarks.gcs_read" in modules
    code = f"import importlib\nfor m in {modules!r}: importlib.import_module(m)\nprint('ok')"
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO)
    assert proc.stdout.strip() == "ok", proc.stderr[-2000:]
