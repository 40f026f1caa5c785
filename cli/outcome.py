"""Turning a flow run's final state into what the user reads and the exit code."""

from __future__ import annotations

import sys

from imgbatch.errors import UsageError


def failed(command: str, state) -> int:
    """One line on stderr naming why the run failed: exit 2 for a bad argument, else 1."""
    from flows.states import failure

    text, exc = failure(state)
    if isinstance(exc, UsageError):
        print(f"imgbatch {command}: error: {text}", file=sys.stderr)
        return 2
    print(f"imgbatch {command}: failed: {text}", file=sys.stderr)
    return 1


def preprocess_result(command: str, state) -> int:
    """What a preprocess (or prepare) run produced; exit 0, or the failure line."""
    if not state.is_completed():
        return failed(command, state)
    result = state.result()
    print(state.message)
    if result.get("assembled"):
        print(f"images.npy {tuple(result['shape'])} sha256 {result['images_sha256'][:16]}...")
    return 0
