"""What a user waits for: every way of running the job, each in a fresh process, end to end.

    .venv/bin/python -m benchmarks.e2e [--n 3000] [--dir D] [--port P] [--repeat 3] [--rounds 3]
    .venv/bin/python -m benchmarks.e2e --fast-decode-only [--n 3000] [--rounds 3]

The corpus is N real photos made by imgbatch.sampledata.samples (mostly JPEG, 300-1500 px, as
benchmarks.throughput uses). Every row of the table is one or more fresh processes, timed
from this process by wall clock from launch to exit (interpreter start-up and imports
included), on the same files (in the page cache after they are written):

- notebook baseline: benchmarks.reference.notebook per CSV row, np.stack, np.save;
- core library: imgbatch.pipeline.preprocess (the flow's steps, its partitions in turn), the
  default pools;
- `imgbatch preprocess` against a server started with `imgbatch server start --port P`
  under a private PREFECT_HOME (stopped at the end), after one warm-up run;
- `imgbatch preprocess` in embedded mode: no server, a second private PREFECT_HOME made warm
  by one 1-row run first (that builds its database);
- a 1-row `imgbatch preprocess` against the running server (the fixed cost of a run);
- `imgbatch --help`, `imgbatch preprocess --help` and `python -c "import prefect"`.
- the core library again with IMGBATCH_FAST_DECODE=0 (every decode Pillow's): the fast
  decode path's gain, as the partitions' CPU seconds with the switch on and off on the same
  files (`--fast-decode-only` runs just these two rows, without Prefect).
The notebook, the core and the CLI against the server run in turn, `--rounds` times, and
each row is its median run (load on a shared machine then hits all three alike); embedded
mode runs once; the light ones (1-row, help, import) take the median of `--repeat`.

Breakdown of a CLI run: plan, partitions and assembly are the flow's own timings in run.json
(plan_seconds, partitions_seconds, assemble_seconds). start-up is launch -> the flow run's
start_time, and teardown is the flow run's end_time -> process exit, both read from the
flow_run table of the PREFECT_HOME's database (the server and the embedded server write
it); "other" is what the flow run spent outside those three phases (task-run bookkeeping
between them, the summary artifact). The parts add up to the seconds column.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import logging
import os
import sqlite3
import statistics
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import datetime

from benchmarks import report, scratch
from imgbatch.cli.local_server import free_port

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CLI = os.path.join(os.path.dirname(sys.executable), "imgbatch")
PHASES = ("start-up", "plan", "partitions", "assembly", "other", "teardown")


def notebook_child(csv: str, images: str, out: str) -> None:
    """The notebook's loop over the CSV rows, as a user would run it."""
    import numpy as np
    import pandas as pd

    from benchmarks.reference import notebook

    paths = pd.read_csv(csv)["image_path"]
    array = np.stack([notebook(os.path.join(images, p)) for p in paths])
    os.makedirs(out, exist_ok=True)
    np.save(os.path.join(out, "images.npy"), array)


@contextlib.contextmanager
def partition_phase() -> Iterator[dict]:
    """The partition phase's wall and CPU seconds (this process: every thread and pool
    thread), as imgbatch.pipeline logs them when a run finishes; filled when the block ends."""
    phase: dict[str, float] = {}

    class Catch(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            if hasattr(record, "partitions_cpu_seconds"):
                phase["partitions"] = record.partitions_seconds
                phase["partitions_cpu"] = record.partitions_cpu_seconds

    logger, handler = logging.getLogger("imgbatch.pipeline"), Catch()
    level = logger.level
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    try:
        yield phase
    finally:
        logger.removeHandler(handler)
        logger.setLevel(level)


def core_child(csv: str, images: str, out: str, partition_size: str = "") -> None:
    """The core library alone (imgbatch.pipeline.preprocess: partitions in turn on the
    default pools); prints its phases (seconds) and the partitions' CPU seconds."""
    t0 = time.perf_counter()
    from imgbatch.compute import parallel
    from imgbatch.params import PreprocessParams
    from imgbatch.pipeline import preprocess

    size = int(partition_size or PreprocessParams.model_fields["partition_size"].default)
    params = PreprocessParams(csv=csv, images=images, out=out, partition_size=size)
    t1 = time.perf_counter()
    with partition_phase() as phase:
        timings = preprocess(params).run["timings"]
    t2 = time.perf_counter()
    parallel.shutdown()
    times = {
        "imports": t1 - t0,
        "plan": timings["plan_seconds"],
        "partitions": phase["partitions"],
        "assembly": t2 - t1 - timings["plan_seconds"] - phase["partitions"],
    }
    print(json.dumps({**times, "partitions_cpu": phase["partitions_cpu"]}))


@dataclass
class Row:
    name: str
    seconds: float
    images: int | None = None  # rows processed, for img/s
    phases: dict = field(default_factory=dict)


def clean_env(home: str | None) -> dict:
    """This environment without any Prefect setting, with its own PREFECT_HOME."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("PREFECT_")}
    if home:
        env["PREFECT_HOME"] = home
    return env


def timed(argv: list[str], env: dict) -> tuple[float, float, str]:
    """(wall seconds, epoch at launch, stdout) of one fresh process; raises if it fails."""
    t0, launched = time.perf_counter(), time.time()
    proc = subprocess.run(argv, env=env, cwd=ROOT, capture_output=True, text=True)
    seconds = time.perf_counter() - t0
    if proc.returncode != 0:
        raise RuntimeError(f"{' '.join(argv[:3])} exited {proc.returncode}: {proc.stderr[-800:]}")
    return seconds, launched, proc.stdout


def median_of(repeat: int, argv: list[str], env: dict) -> float:
    return statistics.median(timed(argv, env)[0] for _ in range(repeat))


def epoch(text: str) -> float:
    """A timestamp as the Prefect database stores it (UTC) -> seconds since the epoch."""
    return datetime.fromisoformat(text.replace(" ", "T")).timestamp()


def last_flow_run(home: str) -> tuple[float, float]:
    """(start_time, end_time) of the newest flow run in PREFECT_HOME's database."""
    with sqlite3.connect(os.path.join(home, "prefect.db")) as db:
        start, end = db.execute(
            "SELECT start_time, end_time FROM flow_run ORDER BY created DESC LIMIT 1"
        ).fetchone()
    return epoch(start), epoch(end)


def preprocess_argv(csv: str, images: str, out: str) -> list[str]:
    return [CLI, "preprocess", "--csv", csv, "--images", images, "--out", out]


def cli_row(name: str, csv: str, images: str, out: str, home: str, n: int) -> Row:
    """One `imgbatch preprocess` with its phases (see the module docstring)."""
    seconds, launched, _ = timed(preprocess_argv(csv, images, out), clean_env(home))
    began, ended = last_flow_run(home)
    with open(os.path.join(out, "run.json")) as f:
        t = json.load(f)["timings"]
    flow = ended - began
    inside = t["plan_seconds"] + t["partitions_seconds"] + t["assemble_seconds"]
    phases = {
        "start-up": began - launched,
        "plan": t["plan_seconds"],
        "partitions": t["partitions_seconds"],
        "assembly": t["assemble_seconds"],
        "other": flow - inside,
        "teardown": launched + seconds - ended,
    }
    return Row(name, seconds, n, phases)


class Corpus:
    """N real photos under DIR/images, the CSV naming them and a 1-row CSV."""

    def __init__(self, base: str, n: int) -> None:
        from imgbatch.sampledata import samples

        self.base, self.n = base, n
        self.images = os.path.join(base, "images")
        paths = samples.write_tree(self.images, n, seed=1)
        self.csv = str(samples.write_csv(os.path.join(base, "rows.csv"), paths))
        self.one = str(samples.write_csv(os.path.join(base, "one.csv"), paths[:1]))
        self.runs = 0

    def out(self) -> str:
        """A fresh output folder for each run."""
        self.runs += 1
        return os.path.join(self.base, f"out-{self.runs}")


class Server:
    """`imgbatch server start --port P` under a private PREFECT_HOME; `stop` undoes it."""

    def __init__(self, home: str, port: int) -> None:
        self.home, self.port = home, port or free_port()

    def __enter__(self) -> Server:
        timed([CLI, "server", "start", "--port", str(self.port)], clean_env(self.home))
        return self

    def __exit__(self, *exc) -> None:
        timed([CLI, "server", "stop"], clean_env(self.home))

    def pid(self) -> int:
        with open(os.path.join(self.home, "server.pid")) as f:
            return int(f.read())


def child_argv(kind: str, c: Corpus) -> list[str]:
    return [sys.executable, "-m", "benchmarks.e2e", "--child", kind, c.csv, c.images, c.out()]


def notebook_row(c: Corpus) -> Row:
    seconds = timed(child_argv("notebook", c), clean_env(None))[0]
    return Row("notebook baseline (per-row PIL loop)", seconds, c.n)


def core_row(c: Corpus, fast: bool = True) -> Row:
    """The core in a fresh process, with the fast decode path on or off (its phases keep
    partitions_cpu, which the phase table does not show)."""
    env = {**clean_env(None), "IMGBATCH_FAST_DECODE": "1" if fast else "0"}
    seconds, _, stdout = timed(child_argv("core", c), env)
    core = json.loads(stdout.strip().splitlines()[-1])
    core["start-up"] = core.pop("imports")
    return Row("core library (plan + run_partition + assemble)", seconds, c.n, core)


def fast_decode_table(on: list[Row], off: list[Row]) -> None:
    """Medians of the core's partitions with IMGBATCH_FAST_DECODE on and off, same files."""

    def med(rows: list[Row], key: str) -> float:
        return statistics.median(r.phases[key] for r in rows)

    print(f"\n| core library, partitions (median of {len(on)}) | fast decode on | off | saved |")
    print("|---|---:|---:|---:|")
    for label, key in (("CPU-s (all threads)", "partitions_cpu"), ("wall s", "partitions")):
        a, b = med(on, key), med(off, key)
        print(f"| {label} | {a:.2f} | {b:.2f} | {b - a:.2f} ({100 * (b - a) / b:.1f}%) |")


def median_row(rows: list[Row], name: str) -> Row:
    """The run with the median seconds, with its own phases."""
    row = sorted(rows, key=lambda r: r.seconds)[len(rows) // 2]
    row.name = name
    return row


def prefect_rows(c: Corpus, tmp: str, port: int, repeat: int, rounds: int) -> dict[str, Row]:
    """The heavy rows in rounds (notebook, core, CLI against the server, in turn, so load on
    a shared machine hits them alike), 1-row runs, embedded mode, the light commands."""
    server_home, embedded_home = os.path.join(tmp, "home-server"), os.path.join(tmp, "home-emb")
    heavy: dict[str, list[Row]] = {"notebook": [], "core": [], "server": [], "core-off": []}
    with Server(server_home, port):
        cli_row("warm-up", c.one, c.images, c.out(), server_home, 1)
        for _ in range(rounds):
            heavy["notebook"].append(notebook_row(c))
            heavy["core"].append(core_row(c))
            heavy["core-off"].append(core_row(c, fast=False))
            run = cli_row("", c.csv, c.images, c.out(), server_home, c.n)
            heavy["server"].append(run)
        one = [cli_row("", c.one, c.images, c.out(), server_home, 1) for _ in range(repeat)]
    of = f"median of {rounds}, in turn"
    fast_decode_table(heavy["core"], heavy["core-off"])
    rows = {
        "notebook": median_row(heavy["notebook"], f"notebook baseline (per-row PIL loop; {of})"),
        "core": median_row(heavy["core"], f"core library: plan + run_partition + assemble ({of})"),
        "server": median_row(heavy["server"], f"`imgbatch preprocess`, running server ({of})"),
        "one": median_row(
            one, f"`imgbatch preprocess`, 1 row, running server (median of {repeat})"
        ),
    }
    cli_row("warm-up", c.one, c.images, c.out(), embedded_home, 1)
    rows["embedded"] = cli_row(
        "`imgbatch preprocess`, embedded (warm PREFECT_HOME)",
        c.csv,
        c.images,
        c.out(),
        embedded_home,
        c.n,
    )
    env = clean_env(embedded_home)
    for key, name, argv in (
        ("help", "`imgbatch --help`", [CLI, "--help"]),
        ("preprocess-help", "`imgbatch preprocess --help`", [CLI, "preprocess", "--help"]),
        ("import", '`python -c "import prefect"`', [sys.executable, "-c", "import prefect"]),
    ):
        rows[key] = Row(f"{name} (median of {repeat})", median_of(repeat, argv, env))
    return rows


ORDER = ("notebook", "core", "server", "embedded", "one", "help", "preprocess-help", "import")


def fmt(value: float | None) -> str:
    return "-" if value is None else f"{value:.2f}"


def table(rows: dict[str, Row]) -> None:
    base = rows["notebook"]
    print("| run | seconds | img/s | x notebook | " + " | ".join(PHASES) + " |")
    print("|---|---:|---:|---:|" + "---:|" * len(PHASES))
    for r in (rows[k] for k in ORDER):
        rate = f"{r.images / r.seconds:.0f}" if r.images else "-"
        speed = base.seconds / r.seconds if r.images == base.images else None
        cells = " | ".join(fmt(r.phases.get(p)) for p in PHASES)
        print(f"| {r.name} | {r.seconds:.2f} | {rate} | {fmt(speed)} | {cells} |")


def targets(rows: dict[str, Row]) -> None:
    """Issue 11's targets against what was measured."""
    imp = rows["import"].seconds
    partitions = [rows[k].phases["partitions"] for k in ("server", "core")]
    checks = [
        (
            "preprocess, running server, x notebook",
            rows["notebook"].seconds / rows["server"].seconds,
            ">=",
            3.3,
        ),
        (
            "Prefect over the core during partitions, %",
            100 * (partitions[0] / partitions[1] - 1),
            "<=",
            5.0,
        ),
        ("1-row run minus import prefect, s", rows["one"].seconds - imp, "<=", 1.5),
        ("`imgbatch --help` / import prefect", rows["help"].seconds / imp, "<=", 0.25),
        (
            "`imgbatch preprocess --help` / import prefect",
            rows["preprocess-help"].seconds / imp,
            "<=",
            0.25,
        ),
    ]
    print("\n| target (issue 11) | measured | limit | met |")
    print("|---|---:|---:|---|")
    for name, value, op, limit in checks:
        met = value >= limit if op == ">=" else value <= limit
        print(f"| {name} | {value:.2f} | {op} {limit:g} | {'yes' if met else 'NO'} |")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--n", type=int, default=3000, help="photos in the corpus")
    ap.add_argument("--dir", default=None, help="work folder (default: a temporary one)")
    ap.add_argument(
        "--port", type=int, default=0, help="port of the benchmark's server (0: any free one)"
    )
    ap.add_argument("--repeat", type=int, default=3, help="runs of each light row (median)")
    ap.add_argument("--rounds", type=int, default=3, help="runs of each heavy row (median)")
    ap.add_argument(
        "--fast-decode-only", action="store_true", help="only the core, fast decode on and off"
    )
    ap.add_argument("--child", nargs="+", help=argparse.SUPPRESS)  # KIND CSV IMAGES OUT
    args = ap.parse_args()
    if args.child:
        kind, *paths = args.child
        (notebook_child if kind == "notebook" else core_child)(*paths)
        return
    if args.fast_decode_only:
        with scratch(args.dir) as tmp:
            corpus = Corpus(tmp, args.n)
            runs = [(core_row(corpus), core_row(corpus, False)) for _ in range(args.rounds)]
        print(f"{args.n} photos, {os.cpu_count()} cores")
        fast_decode_table([a for a, _ in runs], [b for _, b in runs])
        return
    with scratch(args.dir) as tmp:
        corpus = Corpus(tmp, args.n)
        load = os.getloadavg()[0]
        rows = prefect_rows(corpus, tmp, args.port, args.repeat, args.rounds)
    print(
        f"{args.n} photos, {os.cpu_count()} cores; 1-min load average {load:.2f} at the start, "
        f"{os.getloadavg()[0]:.2f} at the end\n"
    )
    table(rows)
    targets(rows)


if __name__ == "__main__":
    report.run(main)
