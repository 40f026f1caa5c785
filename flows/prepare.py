"""prepare_dataset: the whole job as one flow run, each stage its own subflow.

download_archives (wget, verified) -> extract (checked, all or nothing) -> upload_tree
(optional, gs://) -> preprocess_images (shards, then assembly). Every stage skips what is
already done, so a rerun of the whole chain costs little more than its checks.
"""

from __future__ import annotations

import argparse
import os

from prefect import flow, unmapped
from prefect.states import State

from flows.cli import report_failure
from flows.download import download_archives
from flows.preprocess import (
    add_preprocess_options,
    checked_preprocess_params,
    preprocess_images,
    report_result,
)
from flows.upload import upload_tree
from imgbatch.errors import UsageError
from tasks.download import extract_downloaded


@flow(name="prepare-dataset")
def prepare_dataset(
    urls: list[str],
    csv: str,
    work: str,
    out: str,
    sha256: list[str] | None = None,
    upload_to: str | None = None,
    preprocess: dict | None = None,
) -> State:
    """Archives at `urls` + the CSV -> OUT/images.npy.

    Archives land in WORK/archives, trees in WORK/images/<archive stem>/ (the CSV's paths
    are relative to WORK/images); with `upload_to` the trees are copied to gs:// and read
    from there. `preprocess` holds preprocess_images' other parameters (size, ...).
    """
    archives = os.path.join(work, "archives")
    images = os.path.join(work, "images")
    downloaded = download_archives(urls, archives, sha256)
    for tree in extract_downloaded.map(downloaded, unmapped(images)):
        tree.result()
    if upload_to:
        upload_tree(images, upload_to)
        images = upload_to
    return preprocess_images(
        csv=csv, images=images, out=out, return_state=True, **(preprocess or {})
    )


def add_command(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "prepare",
        help="download + extract archives, optionally upload to gs://, then preprocess",
    )
    p.add_argument("urls", nargs="+", metavar="URL", help="archive URLs (.tar.gz, ...)")
    p.add_argument("--work", required=True, help="folder for archives and extracted trees")
    p.add_argument("--sha256", nargs="+", default=None, help="one checksum per URL")
    p.add_argument("--upload-to", default=None, help="gs://BUCKET/PREFIX to copy trees to")
    add_preprocess_options(p, images=False)
    p.set_defaults(func=run_cli)


def run_cli(args: argparse.Namespace) -> int:
    if args.upload_to and not args.upload_to.startswith("gs://"):
        raise UsageError(f"--upload-to must be gs://BUCKET/PREFIX, got {args.upload_to!r}")
    params = checked_preprocess_params(args)
    state = prepare_dataset(
        urls=args.urls,
        csv=args.csv,
        work=args.work,
        out=args.out,
        sha256=args.sha256,
        upload_to=args.upload_to,
        preprocess=params,
        return_state=True,
    )
    if not state.is_completed():
        return report_failure("prepare", state)
    return report_result(state, args.out)
