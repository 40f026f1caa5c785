"""A real small disk for tests of a full disk: a tmpfs mounted under the test's tmp_path."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest


@pytest.fixture
def small_disk(tmp_path: Path):
    """A 2 MiB tmpfs at tmp_path/disk, unmounted afterwards (needs root, else skipped)."""
    mount = tmp_path / "disk"
    mount.mkdir()
    if os.geteuid() != 0:
        pytest.skip("mounting a small tmpfs needs root")
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=2m", "tmpfs", str(mount)])
    if done.returncode != 0:
        pytest.skip("mount -t tmpfs is not permitted here")
    yield mount
    subprocess.run(["umount", "-l", str(mount)], check=True)
