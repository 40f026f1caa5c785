"""The `imgbatch` command. Each subcommand lives beside the flow it runs."""

from __future__ import annotations

import argparse
import importlib
import sys

from flows.states import failure
from imgbatch.errors import UsageError

# Modules that define add_command(subparsers); each sets `func` on its parser.
COMMAND_MODULES = (
    "flows.preprocess",
    "flows.stats",
    "flows.download",
    "flows.upload",
    "flows.prepare",
    "flows.demo",
)


def check_retries(retries: int) -> None:
    """--retries is a count of Prefect retries: 0 or more."""
    if retries < 0:
        raise UsageError(f"--retries must be 0 or more, got {retries}")


def report_failure(command: str, state) -> int:
    """One line on stderr naming why the flow run failed; exit code 1."""
    print(f"imgbatch {command}: failed: {failure(state)[0]}", file=sys.stderr)
    return 1


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="imgbatch",
        description="CSV + images -> one verified, row-aligned uint8 array, run as Prefect flows.",
    )
    sub = parser.add_subparsers(dest="command", required=True)
    for name in COMMAND_MODULES:
        importlib.import_module(name).add_command(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return int(args.func(args) or 0)
    except UsageError as exc:
        print(f"imgbatch {args.command}: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(
            "imgbatch: interrupted; rerun the same command to pick up where it stopped",
            file=sys.stderr,
        )
        return 130


if __name__ == "__main__":
    sys.exit(main())
