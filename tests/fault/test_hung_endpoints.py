"""An endpoint that accepts connections and never answers ends every command in bounded time.

A real hung socket on 127.0.0.1 (tests/helpers/hung.py) stands for a hung proxy or a firewall
that drops: gs:// listing (preprocess, upload) and a wget download each give up within about
two minutes with the product's own timeouts (imgbatch.timeouts), retries included, in one
line naming the endpoint. The three commands run at once, so the suite waits that time once.
The core's logic (tries counted, later calls answered at once) is checked first, with small
timeouts.
"""

from __future__ import annotations

import time

import pytest
from helpers.cli_runs import Finished, start
from helpers.hung import hung_endpoint

from imgbatch.acquire.download import WgetOptions, download
from imgbatch.errors import PermanentError
from imgbatch.sampledata import samples
from imgbatch.storage.gcs import GCSStorage
from imgbatch.storage.gcs_client import RetryPolicy
from imgbatch.timeouts import FIRST_CONTACT_TRIES, READ_TIMEOUT

BOUND = 150.0  # seconds, Prefect's start-up included: "about two minutes"
QUICK = RetryPolicy(timeout=0.5, initial_wait=0.05, max_wait=0.1)


def test_a_silent_gs_endpoint_is_given_up_after_its_tries_then_at_once(monkeypatch):
    with hung_endpoint() as hung:
        monkeypatch.setenv("STORAGE_EMULATOR_HOST", hung.url)
        storage = GCSStorage("gs://bkt/imgs", policy=QUICK)
        t0 = time.monotonic()
        with pytest.raises(PermanentError) as first:
            storage.identities(["a.png"])
        assert time.monotonic() - t0 < 5
        assert str(first.value) == (
            f"the storage endpoint {hung.url} did not answer within 0.5 s (tried "
            f"{FIRST_CONTACT_TRIES} times): is STORAGE_EMULATOR_HOST right?"
        )
        held, t0 = len(hung.held), time.monotonic()
        with pytest.raises(PermanentError, match="did not answer"):
            storage.read("a.png")
        assert time.monotonic() - t0 < 0.1 and len(hung.held) == held  # no new wait


def test_a_silent_gs_endpoint_read_first_is_bounded_too(monkeypatch):
    with hung_endpoint() as hung:
        monkeypatch.setenv("STORAGE_EMULATOR_HOST", hung.url)
        with pytest.raises(PermanentError, match=f"{hung.url} did not answer within 0.5 s"):
            GCSStorage("gs://bkt/imgs", policy=QUICK).read("a.png")


def test_a_silent_download_server_is_given_up_after_its_tries(tmp_path):
    with hung_endpoint() as hung:
        url = f"{hung.url}/a.tar.gz"
        options = WgetOptions(tries=10, waitretry=0, read_timeout=0.5)
        t0 = time.monotonic()
        with pytest.raises(PermanentError) as err:
            download(url, tmp_path, options=options)
        assert time.monotonic() - t0 < 10
    assert str(err.value) == (
        f"{url}: the server 127.0.0.1:{hung.port} did not answer within 0.5 s "
        f"({FIRST_CONTACT_TRIES} tries): check the URL and the network"
    )
    assert list(tmp_path.iterdir()) == []


@pytest.fixture(scope="module")
def hung_runs(tmp_path_factory) -> dict[str, tuple[Finished, str]]:
    """preprocess, upload and download against one hung endpoint, run at once with every
    default; per command (what the user saw, the endpoint's URL)."""
    tmp = tmp_path_factory.mktemp("hung")
    csv = samples.write_csv(tmp / "rows.csv", ["a.png", "b.png"])
    (tmp / "tree").mkdir()
    (tmp / "tree" / "a.txt").write_text("a")
    with hung_endpoint() as hung:
        gcs = {"STORAGE_EMULATOR_HOST": hung.url}
        runs = {
            "preprocess": start(
                ["preprocess", "--csv", str(csv), "--images", "gs://bkt/imgs"]
                + ["--out", str(tmp / "out")],
                gcs,
            ),
            "upload": start(["upload", str(tmp / "tree"), "gs://bkt/up"], gcs),
            "download": start(["download", f"{hung.url}/a.tar.gz", "--dest", str(tmp / "dl")]),
        }
        return {name: (run.wait(timeout=BOUND + 60), hung.url) for name, run in runs.items()}


@pytest.mark.parametrize(
    "command,expected",
    [
        ("preprocess", "the storage endpoint {url} did not answer within {read:g} s (tried 3"),
        ("upload", "the storage endpoint {url} did not answer within {read:g} s (tried 3"),
        ("download", "{url}/a.tar.gz: the server {host} did not answer within {read:g} s (3 tri"),
    ],
)
def test_a_hung_endpoint_ends_the_command_in_bounded_time_in_one_line(hung_runs, command, expected):
    got, url = hung_runs[command]
    assert got.returncode == 1, got.both
    assert got.seconds < BOUND, got.both
    assert "Traceback" not in got.both, got.both
    [line] = got.error_lines
    assert expected.format(url=url, host=url.removeprefix("http://"), read=READ_TIMEOUT) in line
