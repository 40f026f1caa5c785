"""Who holds OUT's one-writer lock, and the one line a second writer is told."""

from __future__ import annotations

import os
import socket
from datetime import datetime

from imgbatch.errors import UsageError

ADVICE = "wait for it or use another out (--out)"


class OutputBusy(UsageError):
    """Another live process holds OUT's lock: wait for it or use another output."""


def new_holder(label: str) -> dict:
    """The record a lock holder leaves: pid, host, start time, and what the run is."""
    return {
        "pid": os.getpid(),
        "host": socket.gethostname(),
        "started": datetime.now().astimezone().isoformat(timespec="seconds"),
        "label": label,
    }


def busy_message(out: str, holder: dict | None, lease: str = "") -> str:
    """One line: who writes OUT, since when, (on a bucket) when its lease ends, what to do."""
    if not holder:
        return f"{out} is being written by another process; {lease}{ADVICE}"
    return (
        f"{out} is being written by pid {holder.get('pid')} on host {holder.get('host')} "
        f"since {_since(holder.get('started', ''))} ({holder.get('label')}); {lease}{ADVICE}"
    )


def _since(started: str) -> str:
    """HH:MM:SS in local time, with the date when it is not today."""
    try:
        t = datetime.fromisoformat(started).astimezone()
    except ValueError:
        return started or "an unknown time"
    today = datetime.now().astimezone().date()
    return t.strftime("%H:%M:%S" if t.date() == today else "%Y-%m-%d %H:%M:%S")
