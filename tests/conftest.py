"""Fixtures shared by every test folder."""

from __future__ import annotations

import os

import pytest

os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")

# Fixtures of the real components, one way for every test folder.
pytest_plugins = ["helpers.gcs", "helpers.disks"]


@pytest.fixture(scope="session")
def prefect_server():
    """One real Prefect API server (SQLite, loopback) for the whole session.

    Start-up is slow under load (30 s timed out on a busy 2-core machine), so the timeout
    is raised and the server shared.
    """
    # Prefect configures its logging when prefect.main is first imported, binding its console
    # handler to sys.stderr as it is then: here, pytest's session-wide capture, not the
    # stream of one test's capsys, which is closed when that test ends.
    import prefect.main  # noqa: F401
    from prefect.testing.utilities import prefect_test_harness

    with prefect_test_harness(server_startup_timeout=120):
        yield


@pytest.fixture
def make_dataset(tmp_path):
    """Factory: n small real-photo images under tmp_path/images and a CSV naming them.

    Returns (csv_path, images_root, row_paths). Small sides keep tests fast; extra rows
    (broken or missing files) can be appended through `extra`.
    """
    from imgbatch.sampledata import samples

    def make(n: int, extra: list[str] = (), min_side: int = 48, max_side: int = 160, seed=0):
        root = tmp_path / "images"
        paths = samples.write_tree(root, n, seed=seed, min_side=min_side, max_side=max_side)
        paths = paths + list(extra)
        csv = samples.write_csv(tmp_path / "rows.csv", paths)
        return str(csv), str(root), paths

    return make
