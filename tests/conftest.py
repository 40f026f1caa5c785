"""Fixtures shared by every test folder."""

from __future__ import annotations

import os

import pytest

os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")


@pytest.fixture(scope="session")
def prefect_server():
    """One real Prefect API server (SQLite, loopback) for the whole session.

    Start-up is slow under load (TESTING.md), so the timeout is raised and the server shared.
    """
    from prefect.testing.utilities import prefect_test_harness

    with prefect_test_harness(server_startup_timeout=120):
        yield
