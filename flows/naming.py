"""Flow run names that say which data a run is about (the runs list is read by people)."""

from __future__ import annotations

import os
from collections.abc import Callable

from prefect.runtime import flow_run


def named(verb: str, field: str) -> Callable[[], str]:
    """A flow_run_name callable: '<verb> <last folder of params.<field>>'."""

    def name() -> str:
        params = flow_run.parameters.get("params") or {}
        value = params.get(field) if isinstance(params, dict) else getattr(params, field, "")
        return f"{verb} {os.path.basename(str(value).rstrip('/')) or value}"

    return name
