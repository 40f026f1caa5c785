"""The core library never imports Prefect (docs/ARCHITECTURE.md, "Layers")."""

import pkgutil
import subprocess
import sys

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
