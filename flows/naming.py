"""Flow run names: a name the user gave is kept; otherwise the name says what the run does and
which data it is about, plus a short id, so two runs on one output are told apart in the runs
list (docs/decisions/run-names.md)."""

from __future__ import annotations

import os
import re
from collections.abc import Callable
from functools import cache
from importlib import resources
from typing import Any

from prefect.runtime import flow_run

# Prefect names a run it was given no name for with a coolname slug of two words
# (prefect.utilities.names.generate_slug(2): "adjective-animal").
SLUG = re.compile(r"[a-z]+-[a-z]+")
# The UI's run form fills its name field with its own suggestion, submitted unless the user
# types over it: a Greek letter, maybe a number, a star or scientist, maybe a noun
# ("zeta4-chomsky", "beta-andromedae-nebula"; the Prefect 3.9 UI bundle's generator).
UI_SUGGESTION = re.compile(
    r"(alpha|beta|gamma|delta|epsilon|zeta|eta|theta|iota|kappa|lambda|mu|nu|xi|omicron|pi|"
    r"rho|sigma|tau|upsilon|phi|chi|psi|omega)\d*-[a-z]+(-[a-z]+)?"
)


@cache
def coolname_words() -> frozenset[str]:
    """Every word Prefect's run-name generator (coolname) draws from."""
    words: set[str] = set()
    for item in resources.files("coolname").joinpath("data").iterdir():
        if item.name.endswith(".txt"):
            lines = item.read_text(encoding="utf-8").splitlines()
            words.update(w.strip() for w in lines if w.strip() and w[0] not in "#" and "=" not in w)
    return frozenset(words)


def given_by_user(name: str | None) -> bool:
    """False for no name, the server's slug ('brave-lion') or the UI form's suggestion
    ('zeta4-chomsky'); True for a name someone typed."""
    if not name or UI_SUGGESTION.fullmatch(name):
        return False
    return not (SLUG.fullmatch(name) and set(name.split("-")) <= coolname_words())


def folder(value: Any, depth: int = 1) -> str:
    """The last `depth` folders of a path or URL: what people call an output."""
    text = str(value).rstrip("/")
    return "/".join(text.split(os.sep)[-depth:]) or text


def params_field(field: str) -> Any:
    """params.<field> of the running flow run (a dict from the API, or the model)."""
    params = flow_run.parameters.get("params") or {}
    return params.get(field) if isinstance(params, dict) else getattr(params, field, "")


def run_name(describe: Callable[[], str]) -> Callable[[], str]:
    """A flow_run_name callable: the user's name if they gave one, else
    '<describe()> <first 6 hex digits of the run id>'."""

    def name() -> str:
        if given_by_user(flow_run.name):
            return flow_run.name
        return f"{describe()} {str(flow_run.id or '')[:6]}".strip()

    return name


def named(verb: str, field: str) -> Callable[[], str]:
    """run_name of '<verb> <last folder of params.<field>>'."""
    return run_name(lambda: f"{verb} {folder(params_field(field))}")
