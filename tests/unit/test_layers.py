"""The core library never imports Prefect (docs/ARCHITECTURE.md, "Layers")."""

import ast
import pkgutil
import subprocess
import sys
from pathlib import Path

import imgbatch

# The orchestration layers and the sample data live in the imgbatch namespace too; everything
# else in it is the core.
NOT_CORE = ("cli", "flows", "tasks", "deployments", "sampledata")
REPO = Path(__file__).resolve().parents[2]
SOURCES = {  # where each layer's files are in the repository
    "core": REPO / "imgbatch",
    "tasks": REPO / "tasks",
    "flows": REPO / "flows",
    "cli": REPO / "imgbatch" / "cli",
    "deployments": REPO / "deployments",
    "sampledata": REPO / "imgbatch" / "sampledata",
}
# Which layers each layer may import (docs/ARCHITECTURE.md, "Layers").
MAY_IMPORT = {
    "core": {"core"},
    "tasks": {"core", "tasks"},
    "flows": {"core", "tasks", "flows"},
    "cli": {"core", "flows", "cli", "sampledata"},
    "deployments": {"flows", "deployments"},
    "sampledata": {"core", "sampledata"},
}
# Inside the core: the stages each part may import, lowest first (docs/ARCHITECTURE.md).
BASE = {"errors", "layout", "atomic_files", "upstream", "timeouts"}
CORE_MAY_IMPORT = {
    "storage": {"storage"},
    "outstore": {"outstore", "storage"},
    "pixels": {"pixels"},
    "acquire": {"acquire", "storage"},
    "plan": {"plan", "outstore", "storage", "pixels"},
    "output": {"output", "plan", "outstore", "storage", "pixels"},
    "compute": {"compute", "output", "plan", "storage", "pixels"},
    "params": {"compute", "pixels"},
    "preflight": {"params", "plan", "acquire", "outstore", "storage"},
    "pipeline": {"preflight", "params", "compute", "output", "plan", "storage", "pixels"},
}


def core_modules() -> list[str]:
    """Every module of the core, by import name."""
    return [
        m.name
        for m in pkgutil.walk_packages(imgbatch.__path__, "imgbatch.")
        if m.name.split(".")[1] not in NOT_CORE
    ]


def test_importing_every_core_module_leaves_prefect_out():
    modules = core_modules()
    assert "imgbatch.pixels.images" in modules and "imgbatch.output.assemble" in modules
    code = (
        "import importlib, sys\n"
        f"for m in {modules!r}: importlib.import_module(m)\n"
        "bad = sorted(k for k in sys.modules if k == 'prefect' or k.startswith('prefect.'))\n"
        "print(bad)\n"
        "sys.exit(1 if bad else 0)\n"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert proc.returncode == 0, f"prefect imported by the core: {proc.stdout} {proc.stderr}"


def imported(path: Path) -> set[str]:
    """Modules a file imports (any depth: lazy imports count too), by absolute name."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.add(node.module)
            found.update(f"{node.module}.{a.name}" for a in node.names)
    return found


def layer_of(module: str) -> str | None:
    """The layer an imported project module belongs to; None outside the project."""
    parts = module.split(".")
    if parts[0] != "imgbatch":
        return "top-level " + parts[0] if parts[0] in NOT_CORE else None
    return parts[1] if len(parts) > 1 and parts[1] in NOT_CORE else "core"


def files_of(layer: str) -> list[Path]:
    files = sorted(SOURCES[layer].rglob("*.py"))
    if layer == "core":
        files = [f for f in files if f.relative_to(REPO / "imgbatch").parts[0] not in NOT_CORE]
    return files


def test_imports_point_one_way():
    wrong = []
    for layer, allowed in MAY_IMPORT.items():
        for path in files_of(layer):
            for m in sorted(imported(path)):
                target = layer_of(m)
                if target is not None and target not in allowed:
                    wrong.append(f"{path.relative_to(REPO)} imports {m}")
    assert not wrong, wrong


def part_of(module: str) -> str:
    """The stage of a core module: its subpackage, or its own name at the top of the core."""
    return module.split(".")[1] if module.count(".") >= 1 else "__init__"


def test_the_core_stages_import_one_way():
    """Sources and pixels know nothing of plans or outputs; the plan knows nothing of OUT's
    shards; only the pipeline sees everything."""
    wrong = []
    for path in files_of("core"):
        rel = path.relative_to(REPO / "imgbatch")
        part = rel.parts[0].removesuffix(".py")
        allowed = BASE if part in BASE or part == "__init__" else CORE_MAY_IMPORT[part] | BASE
        for m in sorted(imported(path)):
            if m.startswith("imgbatch.") and layer_of(m) == "core":
                target = part_of(m)
                if target not in allowed | {"__init__", "__version__"}:
                    wrong.append(f"imgbatch/{rel} ({part}) imports {m}")
    assert not wrong, wrong


def test_at_most_a_dozen_modules_sit_directly_in_the_core():
    top = sorted(p.name for p in (REPO / "imgbatch").glob("*.py"))
    assert len(top) <= 12, top


def test_no_import_cycle_in_the_core():
    paths = {
        ".".join(("imgbatch", *p.relative_to(REPO / "imgbatch").with_suffix("").parts)): p
        for p in files_of("core")
    }
    graph = {
        name.removesuffix(".__init__"): {m for m in imported(p) if m in paths}
        for name, p in paths.items()
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


def test_the_cli_modules_import_no_prefect_pandas_pyarrow_or_storage_client():
    modules = [
        m.name for m in pkgutil.iter_modules([str(REPO / "imgbatch" / "cli")], "imgbatch.cli.")
    ]
    assert "imgbatch.cli.main" in modules and "imgbatch.cli.preprocess" in modules
    code = (
        "import importlib, sys\n"
        f"for m in {modules!r}: importlib.import_module(m)\n"
        "heavy = ('prefect', 'pandas', 'pyarrow', 'google.cloud.storage')\n"
        "print(sorted(k for k in sys.modules if k in heavy))\n"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO)
    assert proc.returncode == 0 and proc.stdout.strip() == "[]", proc.stdout + proc.stderr


def test_every_benchmark_module_imports():
    """They write docs/performance/: a rename in the code must not leave one broken."""
    modules = [m.name for m in pkgutil.iter_modules([str(REPO / "benchmarks")], "benchmarks.")]
    assert "benchmarks.e2e" in modules and "benchmarks.gcs_read" in modules
    code = f"import importlib\nfor m in {modules!r}: importlib.import_module(m)\nprint('ok')"
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO)
    assert proc.stdout.strip() == "ok", proc.stderr[-2000:]
