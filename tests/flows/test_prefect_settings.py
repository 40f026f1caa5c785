"""A Prefect setting the user made in any file Prefect reads is the one a command uses.

Prefect 3 reads, highest priority first: the environment, `.env`, `prefect.toml` and
`pyproject.toml [tool.prefect]` in the working directory, then the active profile. The
command reads them without importing Prefect (help stays fast), so these tests check it
against Prefect's own resolution and with real commands against a real server.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from tests.flows.test_server_command import IMGBATCH, flow_runs
from tests.unit.test_cli_startup import clean_env

FILES = {
    "prefect.toml": '[api]\nurl = "{url}"\n',
    ".env": "PREFECT_API_URL={url}\n",
    "pyproject.toml": '[project]\nname = "x"\n\n[tool.prefect.api]\nurl = "{url}"\n',
}

COMPARE = """
import json
from imgbatch.cli import prefect_setup
names = ["PREFECT_API_URL", "PREFECT_SERVER_DATABASE_TIMEOUT", "PREFECT_LOGGING_LEVEL"]
ours = {n: prefect_setup.setting(n) for n in names}
from prefect.settings.models.root import Settings
theirs = Settings().to_environment_variables(exclude_unset=True)
print(json.dumps([ours, {n: theirs.get(n) for n in names}]))
"""


def test_every_source_and_its_priority_as_prefect_resolves_them(tmp_path):
    """Each name is set in two or more sources with different values: the winner must be
    Prefect's winner (environment > .env > prefect.toml > pyproject.toml > profile)."""
    home = tmp_path / "home"
    home.mkdir()
    (home / "profiles.toml").write_text(
        'active = "p"\n[profiles.p]\nPREFECT_API_URL = "http://profile/api"\n'
        'PREFECT_SERVER_DATABASE_TIMEOUT = "1.0"\nPREFECT_LOGGING_LEVEL = "DEBUG"\n'
    )
    (tmp_path / "pyproject.toml").write_text(
        '[tool.prefect.server.database]\ntimeout = 2.0\n[tool.prefect.api]\nurl = "http://py/api"\n'
    )
    (tmp_path / "prefect.toml").write_text("[server.database]\ntimeout = 3.0\n")
    (tmp_path / ".env").write_text("PREFECT_API_URL=http://dotenv/api\nOTHER=1\n")
    env = {**clean_env(home), "PREFECT_LOGGING_LEVEL": "WARNING"}
    proc = subprocess.run(
        [sys.executable, "-c", COMPARE], cwd=tmp_path, env=env, capture_output=True, text=True
    )
    assert proc.returncode == 0, proc.stderr
    ours, theirs = json.loads(proc.stdout.strip().splitlines()[-1])
    assert ours["PREFECT_API_URL"] == theirs["PREFECT_API_URL"] == "http://dotenv/api"
    assert float(ours["PREFECT_SERVER_DATABASE_TIMEOUT"]) == 3.0
    assert float(theirs["PREFECT_SERVER_DATABASE_TIMEOUT"]) == 3.0
    assert ours["PREFECT_LOGGING_LEVEL"] == theirs["PREFECT_LOGGING_LEVEL"] == "WARNING"


@pytest.mark.usefixtures("prefect_server")
@pytest.mark.parametrize("source", list(FILES))
def test_a_server_named_in_a_settings_file_gets_the_run(source, make_dataset, tmp_path):
    """Not a temporary server, and the command's own URL never replaces the user's."""
    from prefect.settings import PREFECT_API_URL

    api_url = PREFECT_API_URL.value()
    project = tmp_path / "project"
    project.mkdir()
    (project / source).write_text(FILES[source].format(url=api_url))
    csv, root, _ = make_dataset(1, max_side=48)
    out = tmp_path / f"out-{source.strip('.')}"
    argv = ["preprocess", "--csv", csv, "--images", root, "--out", str(out), "--size", "8"]
    run = subprocess.run(
        [*IMGBATCH, *argv],
        cwd=project,
        env=clean_env(tmp_path / "home"),
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert run.returncode == 0, run.stderr
    assert "temporary Prefect server" not in run.stderr
    runs = flow_runs(api_url)  # the session server's: other tests' runs of other flows too
    ours = [r for r in runs if (r["parameters"].get("params") or {}).get("out") == str(out)]
    assert [r["state_type"] for r in ours] == ["COMPLETED"]
    assert not (Path(tmp_path / "home") / "imgbatch-temporary-server.log").exists()
