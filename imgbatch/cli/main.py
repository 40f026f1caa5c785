"""`imgbatch COMMAND ...`: parse, check, run one flow, print one result or one failure line.

Help and argument errors never import Prefect, pandas or the storage client: command
modules import only the parameter models; each imports its flow when it runs.
Exit codes: 0 done, 1 a run failed (one line says why), 2 a bad argument, 130 interrupted.
"""

from __future__ import annotations

import argparse
import atexit
import importlib
import importlib.metadata
import os
import sys

from imgbatch.cli import prefect_setup, terminal
from imgbatch.errors import ImgbatchError, UsageError

INTERRUPTED = 130  # the shell's code for a command ended by SIGINT

# Command name -> module with register(subparsers) and run(args) -> int.
COMMANDS = {
    "preprocess": "imgbatch.cli.preprocess",
    "prepare": "imgbatch.cli.prepare",
    "download": "imgbatch.cli.download",
    "upload": "imgbatch.cli.upload",
    "stats": "imgbatch.cli.stats",
    "demo": "imgbatch.cli.demo",
    "server": "imgbatch.cli.server",
}


class Parser(argparse.ArgumentParser):
    """argparse, with its errors on one line (the usage is one --help away)."""

    def error(self, message: str):
        print(f"{self.prog}: error: {message} (see {self.prog} --help)", file=sys.stderr)
        sys.exit(2)


def version() -> str:
    """The installed package's version (its metadata: no import of the package's modules)."""
    try:
        return importlib.metadata.version("imgbatch")
    except importlib.metadata.PackageNotFoundError:
        return "unknown (not installed)"


def build_parser() -> argparse.ArgumentParser:
    parser = Parser(
        prog="imgbatch",
        description="CSV + images -> one verified, row-aligned uint8 array, run as Prefect flows.",
    )
    parser.add_argument("--version", action="version", version=f"imgbatch {version()}")
    parser.set_defaults(check=lambda args: None, runs_flows=True)
    sub = parser.add_subparsers(dest="command", required=True)
    for name, module in COMMANDS.items():
        importlib.import_module(module).register(sub, name)
    return parser


def main(argv: list[str] | None = None) -> int:
    try:
        args = build_parser().parse_args(argv)
    except SystemExit as exc:  # --help (0) or a bad option (2), already printed
        return int(exc.code or 0)
    try:
        params = args.check(args)
        if not args.runs_flows:
            return int(args.run(args, params) or 0)
        temporary = prefect_setup.prepare()
        with prefect_setup.foreground_settings(), terminal.quiet_console(link=not temporary):
            return int(args.run(args, params) or 0)
    except prefect_setup.PrefectUnavailable as exc:
        print(f"imgbatch {args.command}: failed: {exc}", file=sys.stderr)
        return 1
    except UsageError as exc:
        print(f"imgbatch {args.command}: error: {exc}", file=sys.stderr)
        return 2
    except ImgbatchError as exc:  # e.g. a gs:// CSV whose store never answers, while checking
        print(f"imgbatch {args.command}: failed: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print(
            f"imgbatch {args.command}: interrupted; rerun the same command to pick up where "
            "it stopped",
            file=sys.stderr,
        )
        return INTERRUPTED


def release_pool_semaphores() -> None:
    """Before an exit that skips the exit handlers: release the decode processes' semaphores
    as multiprocessing's own handler would (its finalizers, priority 0 and up, without its
    join of the workers), or its resource tracker reports them leaked after the last line."""
    if "multiprocessing.util" in sys.modules:
        sys.modules["multiprocessing.util"]._run_finalizers(0)


def entry_point() -> None:
    """The `imgbatch` console script: exit as soon as the command is done.

    Every other exit handler still runs first (Prefect flushes its events and logs, the
    temporary server is stopped); only the interpreter's own teardown of Prefect's modules
    and threads, a noticeable part of every command's exit, is skipped. After a Ctrl-C the
    command ends at once: the partitions still in flight are abandoned (their threads would be
    joined first, and the exit handlers wait for Prefect's queues): the temporary server is
    stopped first; the watchdog stops the decode processes, as it does when the command is
    killed.
    """
    code = [1]
    atexit.register(lambda: os._exit(code[0]))  # registered first, so it runs last
    code[0] = main()
    sys.stdout.flush()
    sys.stderr.flush()
    if code[0] == INTERRUPTED:
        release_pool_semaphores()
        prefect_setup.stop_temporary_server()
        os._exit(code[0])
    sys.exit(code[0])


if __name__ == "__main__":
    entry_point()
