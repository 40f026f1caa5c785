"""Prefect flows: orchestration only (parameters, ordering, one task per partition, final state)."""

import os

# Prefect's telemetry would try to reach the internet; off unless the user turns it back on.
# DO_NOT_TRACK is the client-side switch (it also silences the first-run notice on a TTY).
if "PREFECT_SERVER_ANALYTICS_ENABLED" not in os.environ:
    os.environ["PREFECT_SERVER_ANALYTICS_ENABLED"] = "false"
    os.environ.setdefault("DO_NOT_TRACK", "1")
