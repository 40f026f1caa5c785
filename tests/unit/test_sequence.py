"""The preprocess sequence lives once, in imgbatch.pipeline (issue 20, "One sequence").

Outside tests/, only imgbatch/pipeline.py may use the steps a run is made of: whoever else
needs a run (the flow, the benchmarks, a notebook) goes through the pipeline, and so always
takes OUT's writer lock and its ownership check.
"""

from __future__ import annotations

import ast
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
# Each step of a run -> the module that defines it (which may name it).
STEPS = {
    "claim_output": "imgbatch/output/ownership.py",
    "dataset_identity": "imgbatch/output/ownership.py",
    "make_plan": "imgbatch/plan/run_plan.py",
    "check_found": "imgbatch/plan/images_found.py",
    "split_done": "imgbatch/output/shards.py",
    "assemble": "imgbatch/output/assemble.py",
}
PIPELINE = "imgbatch/pipeline.py"
SOURCES = ("imgbatch", "flows", "tasks", "deployments", "benchmarks")


def steps_used(path: Path) -> set[str]:
    """The steps a file imports or names (a call, or a reference passed on)."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom):
            found.update(a.name for a in node.names if a.name in STEPS)
        elif isinstance(node, ast.Name) and node.id in STEPS:
            found.add(node.id)
        elif isinstance(node, ast.Attribute) and node.attr in STEPS:
            found.add(node.attr)
    return found


def python_files() -> list[Path]:
    return sorted(p for top in SOURCES for p in (REPO / top).rglob("*.py"))


def test_only_the_pipeline_uses_the_steps_of_a_run():
    files = python_files()
    assert REPO / "flows/preprocess.py" in files and REPO / "benchmarks/e2e.py" in files
    wrong = []
    for path in files:
        rel = path.relative_to(REPO).as_posix()
        if rel == PIPELINE:
            continue
        for step in sorted(steps_used(path)):
            if STEPS[step] != rel:
                wrong.append(f"{rel} uses {step}: run the sequence via imgbatch.pipeline")
    assert not wrong, "\n".join(wrong)


def test_the_pipeline_uses_every_step():
    """The list above names the real steps: the pipeline is made of them."""
    assert steps_used(REPO / PIPELINE) == set(STEPS)
