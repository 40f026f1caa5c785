"""Orchestration overhead: `imgbatch preprocess` end to end against the core library alone,
on the same files, with Prefect's start-up reported separately.

    .venv/bin/python -m benchmarks.overhead [--n 20000] [--unique 400] [--dir /tmp/imgbatch-oh]

The corpus is `--unique` real-photo files (sampledata.samples) copied to N distinct paths, so
every row is a real decode of a realistic file. Runs use Prefect's embedded mode (no
PREFECT_API_URL), as a first-time user would.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import time

from imgbatch import parallel
from imgbatch.assemble import assemble
from imgbatch.partition import run_partition
from imgbatch.plan import make_plan
from imgbatch.spec import ImageSpec
from imgbatch.storage import LocalStorage
from sampledata import samples

CLI = os.path.join(os.path.dirname(sys.executable), "imgbatch")


def make_corpus(root: str, n: int, unique: int) -> list[str]:
    originals = samples.write_tree(os.path.join(root, "src"), unique, seed=2)
    paths = []
    for i in range(n):
        src = originals[i % unique]
        rel = f"copies/{i // 1000:03d}/{i:06d}{os.path.splitext(src)[1]}"
        os.makedirs(os.path.join(root, os.path.dirname(rel)), exist_ok=True)
        shutil.copyfile(os.path.join(root, "src", src), os.path.join(root, rel))
        paths.append(rel)
    return paths


def core_run(csv: str, root: str, out: str) -> float:
    """Plan, every partition (shared pools, partitions in turn), assemble: seconds."""
    t0 = time.perf_counter()
    storage, spec = LocalStorage(root), ImageSpec()
    plan = make_plan(csv, "image_path", storage, spec, 1000, out)
    for part in plan.partitions:
        run_partition(part, plan.rows_file, storage, spec, out)
    assemble(out, plan.partitions, plan.n_rows, spec, {})
    return time.perf_counter() - t0


def cli_run(csv: str, root: str, out: str) -> float:
    env = {k: v for k, v in os.environ.items() if k != "PREFECT_API_URL"}
    t0 = time.perf_counter()
    subprocess.run(
        [CLI, "preprocess", "--csv", csv, "--images", root, "--out", out],
        env=env,
        check=True,
        capture_output=True,
    )
    return time.perf_counter() - t0


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--n", type=int, default=20000)
    ap.add_argument("--unique", type=int, default=400)
    ap.add_argument("--dir", default="/tmp/imgbatch-oh")
    args = ap.parse_args()
    shutil.rmtree(args.dir, ignore_errors=True)
    root = os.path.join(args.dir, "images")
    paths = make_corpus(root, args.n, args.unique)
    csv = str(samples.write_csv(os.path.join(args.dir, "rows.csv"), paths))
    tiny = str(samples.write_csv(os.path.join(args.dir, "one.csv"), paths[:1]))

    core = core_run(csv, root, os.path.join(args.dir, "out-core"))
    parallel.shutdown()
    before = cli_run(tiny, root, os.path.join(args.dir, "out-one"))
    e2e = cli_run(csv, root, os.path.join(args.dir, "out-cli"))
    after = cli_run(tiny, root, os.path.join(args.dir, "out-two"))
    startup = (before + after) / 2  # it varies by a few seconds from run to run
    shutil.rmtree(args.dir, ignore_errors=True)

    work = e2e - startup
    print(
        f"{args.n} images ({args.unique} distinct real-photo files), "
        f"{parallel.default_workers()} cores\n"
    )
    print("| run | seconds | img/s |")
    print("|---|---|---|")
    print(
        f"| core library (plan + partitions + assemble, no Prefect) | {core:.1f} | "
        f"{args.n / core:.0f} |"
    )
    print(f"| `imgbatch preprocess` end to end | {e2e:.1f} | {args.n / e2e:.0f} |")
    print(f"| Prefect start-up + teardown (same command, 1 row; mean of 2) | {startup:.1f} | - |")
    print(f"| `imgbatch preprocess` minus start-up | {work:.1f} | {args.n / work:.0f} |")
    print(
        f"\norchestration overhead beyond start-up: {100 * (work / core - 1):+.1f}% "
        f"of the core's time"
    )


if __name__ == "__main__":
    main()
