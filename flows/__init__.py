"""Prefect flows: orchestration only (parameters, ordering, .map, final state, CLI)."""

import os

# Prefect's telemetry would try to reach the internet; off unless the user turns it back on.
os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
