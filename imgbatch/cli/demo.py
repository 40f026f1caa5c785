"""`imgbatch demo`: the whole job on built-in sample data, then a check of what it wrote.

Sample archives are served on 127.0.0.1 (the first one's connection is cut once, so wget
resumes it), downloaded and extracted, uploaded to a fake-gcs-server the demo starts on a
free loopback port (its objects kept under WORKDIR/gcs), and preprocessed from gs:// into
WORKDIR/out, or with --out-gcs into gs://imgbatch-demo/out on the same emulator (verified
there, while it runs). Rerunning the demo reuses everything: the downloads, the extraction,
the uploaded objects (same generations, so the upload skips them) and the done partitions.
"""

from __future__ import annotations

import argparse
import hashlib
import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from imgbatch.errors import UsageError
from imgbatch.params import PrepareParams

BUCKET = "imgbatch-demo"
GCS_OUT = f"gs://{BUCKET}/out"


def register(sub: argparse._SubParsersAction, name: str) -> None:
    p = sub.add_parser(name, help="run the whole job on built-in sample photos and verify it")
    p.add_argument("--workdir", default="demo-run", help="folder for sample data and output")
    p.add_argument("--rows", type=int, default=240, help="CSV rows to generate")
    p.add_argument(
        "--out-gcs",
        action="store_true",
        help=f"write the output to {GCS_OUT} on the demo's emulator instead of WORKDIR/out",
    )
    p.set_defaults(check=check, run=run)


MIN_ROWS = 10  # a few photos per archive besides the four broken rows


def check(args: argparse.Namespace) -> None:
    """Sane --rows and the emulator binary, before any sample data is written."""
    from imgbatch.cli.gcs_emulator import EmulatorMissing, fake_gcs_binary

    if args.rows < MIN_ROWS:
        raise UsageError(f"--rows must be at least {MIN_ROWS}, got {args.rows}")
    try:
        fake_gcs_binary()
    except EmulatorMissing as exc:
        raise UsageError(str(exc)) from None


@contextmanager
def _emulated_gcs(root: Path) -> Iterator[str]:
    """A fake-gcs-server keeping its objects under `root` (a rerun finds them), with the demo
    bucket, STORAGE_EMULATOR_HOST pointing at it."""
    from imgbatch.cli.gcs_emulator import running_emulator

    before = os.environ.get("STORAGE_EMULATOR_HOST")
    with running_emulator(root) as emulator:
        emulator.create_bucket(BUCKET)
        os.environ["STORAGE_EMULATOR_HOST"] = emulator.url
        try:
            yield emulator.url
        finally:
            if before is None:
                os.environ.pop("STORAGE_EMULATOR_HOST", None)
            else:
                os.environ["STORAGE_EMULATOR_HOST"] = before


def _params(workdir: Path, csv: Path, archives: list[Path], base: str, out: str) -> PrepareParams:
    return PrepareParams(
        urls=[f"{base}/{a.name}" for a in archives],
        csv=str(csv),
        work=str(workdir / "work"),
        out=out,
        sha256=[hashlib.sha256(a.read_bytes()).hexdigest() for a in archives],
        partition_size=50,
        waitretry=1.0,
        upload_to=f"gs://{BUCKET}/images",
    )


def run(args: argparse.Namespace, params: None) -> int:
    from imgbatch.cli.demo_data import make_archives, serve_folder
    from imgbatch.cli.outcome import failed
    from imgbatch.flows.prepare import prepare_dataset
    from imgbatch.output.verify import verify_output

    workdir = Path(args.workdir).resolve()
    out = GCS_OUT if args.out_gcs else str(workdir / "out")
    csv, archives = make_archives(workdir, args.rows)
    print(
        f"sample data: {args.rows} CSV rows in {csv}; {len(archives)} archives in "
        f"{archives[0].parent}, served on 127.0.0.1"
    )
    first = {archives[0].name}
    with (
        serve_folder(archives[0].parent, first) as (base, log),
        _emulated_gcs(workdir / "gcs") as gcs,
    ):
        print(f"GCS emulator (fake-gcs-server) on {gcs}, objects kept in {workdir / 'gcs'}")
        state = prepare_dataset(_params(workdir, csv, archives, base, out), return_state=True)
        verified = verify_output(out) if state.is_completed() else None  # OUT may be on it
    for archive in archives[:1]:
        print(log.resume_line(archive.name))
    if verified is None:
        return failed(args.command, state)
    _report(workdir, out, verified)
    return 0


def _report(workdir: Path, out: str, result: dict) -> None:
    """Say what the run wrote, verified (`result`: verify_output's), and where it is."""
    print(f"\nverified output in {out}/")
    print(f"  images.npy     uint8 {tuple(result['shape'])}, row i = CSV row i, sha256 checked")
    print("  index.parquet  row, image_path, status, error, width, height, partition")
    print(f"  run.json       parameters, counts {result['counts']}, timings")
    print(f"  preview.png    contact sheet (flagged rows crossed in red): {out}/preview.png")
    print(f"  shards/        one committed shard per partition ({result['partitions']})")
    print(f"images read from gs://{BUCKET}/images (the local emulator)")
    if out == GCS_OUT:
        print(f"{out} is kept with the emulator's objects in {workdir / 'gcs'}/")
    print(f"downloads and extracted trees: {workdir / 'work'}/")
