"""Benchmarks: each module prints its tables and writes them to docs/performance/ (report.py)."""

from __future__ import annotations

import os
import tempfile


def scratch(parent: str | None) -> tempfile.TemporaryDirectory:
    """A temporary work folder, inside `parent` (made if missing) when one is given."""
    if parent:
        os.makedirs(parent, exist_ok=True)
    return tempfile.TemporaryDirectory(dir=parent)
