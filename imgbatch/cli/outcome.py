"""Turning a flow run's final state into what the user reads and the exit code."""

from __future__ import annotations

import sys
from collections.abc import Callable
from typing import Any

from imgbatch.cli.terminal import drain_events
from imgbatch.errors import UsageError
from imgbatch.layout import images_digest


def failed(command: str, state) -> int:
    """One line on stderr naming why the run failed: exit 2 for a bad argument, else 1."""
    from imgbatch.flows.states import failure

    text, exc = failure(state)
    drain_events()
    if isinstance(exc, UsageError):
        print(f"imgbatch {command}: error: {text}", file=sys.stderr)
        return 2
    print(f"imgbatch {command}: failed: {text}", file=sys.stderr)
    return 1


def report(command: str, state, show: Callable[[Any], None]) -> int:
    """Exit 0 after `show(result)` for a completed run; else the failure line (exit 1 or 2)."""
    if not state.is_completed():
        return failed(command, state)
    drain_events()
    show(state.result())
    return 0


def preprocess_result(command: str, state) -> int:
    """What a preprocess (or prepare) run produced: its message and the array's hash."""

    def show(result: dict) -> None:
        print(state.message)
        if result.get("assembled"):
            print(f"images.npy {tuple(result['shape'])} {images_digest(result)}")

    return report(command, state, show)
