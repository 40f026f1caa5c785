"""The docs stay split by reader: a short README, performance figures only from the commands
that measure them, and an ARCHITECTURE that names every module (docs/ARCHITECTURE.md)."""

import re
import sys
from pathlib import Path

from benchmarks import report

REPO = Path(__file__).resolve().parents[2]
README_MAX_LINES = 300
# A measured figure: a number with a unit of speed, time per item or size per second.
FIGURE = re.compile(r"\d[\d,.]*\s?(img/s|images/s|GETs/s|files/s|MB/s|ms/|ms per|CPU-s)")


def page_problems(path: Path) -> list[str]:
    """What is wrong with a performance page: it must say which command wrote it, and on what."""
    text = path.read_text()
    command = f"Command: `.venv/bin/python -m benchmarks.{path.stem}"
    wanted = [report.MARK, command, "- Machine: ", "- 1-min load average: "]
    return [f"{path.name}: no {w!r}" for w in wanted if w not in text]


def test_the_readme_is_read_in_one_sitting():
    lines = (REPO / "README.md").read_text().count("\n")
    assert lines <= README_MAX_LINES, f"README.md has {lines} lines; move detail to docs/"


def test_every_performance_page_carries_the_command_that_wrote_it():
    pages = sorted((REPO / "docs" / "performance").glob("*.md"))
    benched = re.findall(r"-m benchmarks\.(\w+)", (REPO / "Makefile").read_text())
    assert len(benched) >= 5 and {p.stem for p in pages} >= set(benched), (benched, pages)
    problems = [p for page in pages for p in page_problems(page)]
    assert not problems, problems


def test_hand_written_docs_quote_no_measured_figures():
    """Figures live on the generated pages; the README, ARCHITECTURE and decisions link there."""
    written = [
        REPO / "README.md",
        *(REPO / "docs").glob("*.md"),
        *(REPO / "docs").glob("decisions/*.md"),
    ]
    found = [
        f"{path.relative_to(REPO)}:{n}: {line.strip()}"
        for path in written
        for n, line in enumerate(path.read_text().splitlines(), 1)
        if FIGURE.search(line)
    ]
    assert not found, found


def test_architecture_names_every_module():
    text = (REPO / "docs" / "ARCHITECTURE.md").read_text()
    modules = [
        p
        for folder in ("imgbatch", "flows", "tasks", "deployments")
        for p in (REPO / folder).rglob("*.py")
        if p.name != "__init__.py"
    ]
    assert len(modules) > 40, modules
    missing = sorted(str(p.relative_to(REPO)) for p in modules if p.name not in text)
    assert not missing, f"docs/ARCHITECTURE.md does not mention {missing}"


def print_a_table() -> None:
    print("| rows | seconds |\n|---:|---:|\n| 10 | 1.5 |")


def test_a_benchmark_run_writes_its_table_under_its_command(tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(sys, "argv", ["bench", "--n", "10"])
    report.run(print_a_table, pages=tmp_path)
    (page,) = tmp_path.glob("*.md")
    text = page.read_text()
    assert f"Command: `.venv/bin/python -m {__name__} --n 10`" in text
    assert "| 10 | 1.5 |" in text and "| 10 | 1.5 |" in capsys.readouterr().out
    assert "- Machine: " in text and "- Software: Python " in text


def test_a_failed_run_or_a_child_process_writes_no_page(tmp_path, monkeypatch):
    monkeypatch.setattr(sys, "argv", ["bench", "--child", "core"])
    report.run(print_a_table, pages=tmp_path)
    monkeypatch.setattr(sys, "argv", ["bench"])
    assert report.run(lambda: 1, pages=tmp_path) == 1
    assert list(tmp_path.iterdir()) == []
