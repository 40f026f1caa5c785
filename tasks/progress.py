"""The progress artifact every stage shows in the Prefect UI, cheap to update per step.

Each update of an artifact is an API call: a stage reports every step (a partition, a file),
the artifact calls the API at most every few seconds, and always for the last step.
"""

from __future__ import annotations

import time

from prefect.artifacts import create_progress_artifact, update_progress_artifact


class ThrottledProgress:
    """A progress artifact updated at most every `seconds`, and always when `last` is set,
    so the UI ends at the true figure."""

    def __init__(self, percent: float, text: str, seconds: float) -> None:
        self.seconds, self.last = seconds, 0.0
        self.id = create_progress_artifact(percent, description=text)

    def update(self, percent: float, text: str, last: bool = False) -> None:
        now = time.monotonic()
        if last or now - self.last >= self.seconds:
            self.last = now
            update_progress_artifact(self.id, percent, description=text)
