"""`imgbatch download`: the download-archives flow."""

from __future__ import annotations

import argparse

from imgbatch.cli.options import add_command, values
from imgbatch.cli.outcome import report
from imgbatch.params import DownloadParams
from imgbatch.preflight import check_download


def register(sub: argparse._SubParsersAction, name: str) -> None:
    add_command(
        sub,
        name,
        DownloadParams,
        check,
        run,
        positional=("urls",),
        help="download archives with wget (resumed, verified) and optionally extract them",
        description="Run the download-archives flow: one wget per URL with resume and retries, "
        "saved as DEST/NAME only after its size (and sha256, when given) checked out.",
    )


def check(args: argparse.Namespace) -> DownloadParams:
    params = DownloadParams.checked(**values(args, DownloadParams))
    check_download(params)
    return params


def run(args: argparse.Namespace, params: DownloadParams) -> int:
    from imgbatch.flows.download import download_archives

    def show(results: list[dict]) -> None:
        for r in results:
            note = " (already there)" if r["skipped"] else ""
            tree = f" -> extracted to {r['extracted']}" if r["extracted"] else ""
            print(f"{r['path']}: {r['size']:,} bytes, sha256 {r['sha256']}{note}{tree}")

    return report(args.command, download_archives(params, return_state=True), show)
