"""A run whose images are not where the CSV says must stop before decoding, and say why.

The usual cause is an images root one folder off: archives whose members already carry their
category folder extracted once more into a folder of their own, or a root pointing inside
the category folder. So the message looks for the first missing file one or two folders
deeper, and with its leading folders dropped, and names where it is.
"""

from __future__ import annotations

import glob
import os
from pathlib import PurePosixPath

from imgbatch.errors import PermanentError
from imgbatch.plan.run_plan import Plan
from imgbatch.storage.relpath import InvalidPath, clean_relative
from imgbatch.storage.urls import is_gcs_url


class ImagesNotFound(PermanentError):
    """Too few of the CSV's images exist under the images root."""


def check_found(plan: Plan, root: str, min_found: float) -> None:
    """Raise ImagesNotFound when fewer than `min_found` of the rows' sources exist."""
    if plan.n_rows == 0 or plan.found >= min_found * plan.n_rows and plan.found > 0:
        return
    line = (
        f"only {plan.found} of {plan.n_rows} images named by the CSV exist under {root} "
        f"(need {min_found:.0%}); first missing: {plan.first_missing}"
    )
    hint = refused(plan.first_missing or "")
    if hint is None and not is_gcs_url(root):
        hint = locate(root, plan.first_missing or "")
    if hint:
        line += f"; {hint}"
    raise ImagesNotFound(line)


def refused(rel: str) -> str | None:
    """Why a row path is never read (absolute, or climbing out of the root), as a hint."""
    try:
        clean_relative(rel)
    except InvalidPath:
        absolute = rel.strip().replace("\\", "/").startswith("/")
        what = "absolute paths" if absolute else "paths that leave the images root"
        return f"{what} are refused: the CSV's paths must be relative to the images root"
    return None


def locate(root: str, rel: str) -> str | None:
    """Where a file named `rel` is, one or two folders deeper or shallower, as a hint."""
    parts = PurePosixPath(rel).parts
    if not parts or ".." in parts or PurePosixPath(rel).is_absolute():
        return None
    for depth, word in ((1, "one folder"), (2, "two folders")):
        pattern = os.path.join(glob.escape(root), *(["*"] * depth), glob.escape(rel))
        hits = sorted(glob.glob(pattern))
        if hits:
            return f"found at {hits[0]}: is the images root {word} too high?"
    for drop, word in ((1, "one folder"), (2, "two folders")):
        if len(parts) > drop:
            candidate = os.path.join(root, *parts[drop:])
            if os.path.isfile(candidate):
                return f"found at {candidate}: is the images root {word} too deep?"
    return None
