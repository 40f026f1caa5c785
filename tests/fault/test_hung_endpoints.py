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
from concurrent.futures import ThreadPoolExecutor

import pytest
from helpers.cli_runs import Finished, start
from helpers.gcs import MEDIA, UPLOAD, FaultProxy, Rule, _new_bucket, direct_client
from helpers.hung import hung_endpoint

from imgbatch.acquire.download import WgetOptions, download
from imgbatch.acquire.upload import sync_tree
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


def test_a_gs_endpoint_that_hangs_mid_run_is_given_up_once_silent_then_at_once(faulty_gcs):
    names = [f"{i}.png" for i in range(5)]
    for name in names:
        faulty_gcs.client().bucket(faulty_gcs.name).blob(f"imgs/{name}").upload_from_string(b"x")
    storage = GCSStorage(faulty_gcs.url("imgs"), policy=QUICK)
    assert None not in storage.identities(names)
    assert storage.read(names[0]) == b"x"  # the endpoint answered: no first contact any more
    faulty_gcs.proxy.set_rules(Rule("hang", "GET", MEDIA))
    t0 = time.monotonic()
    with ThreadPoolExecutor(4) as pool:
        errors = list(pool.map(lambda n: pytest.raises(PermanentError, storage.read, n), names))
    # silent for FIRST_CONTACT_TRIES read timeouts (1.5 s here), not 4 reads x 5 attempts
    assert time.monotonic() - t0 < 5
    for err in errors:
        assert str(err.value).startswith(f"the storage endpoint {faulty_gcs.proxy.url} stopped ")
        assert "rerun once it answers, finished work is kept" in str(err.value)
    held, t0 = faulty_gcs.proxy.count("GET", MEDIA, "hang"), time.monotonic()
    with pytest.raises(PermanentError, match="stopped answering"):
        storage.read(names[1])
    assert time.monotonic() - t0 < 0.1 and faulty_gcs.proxy.count("GET", MEDIA, "hang") == held


def test_a_slow_gs_endpoint_that_still_answers_is_not_given_up(faulty_gcs):
    """Every other read times out, but the endpoint keeps answering the rest: slow, not hung."""
    names = [f"{i}.png" for i in range(6)]
    for name in names:
        faulty_gcs.client().bucket(faulty_gcs.name).blob(f"imgs/{name}").upload_from_string(b"y")
    storage = GCSStorage(faulty_gcs.url("imgs"), policy=QUICK)
    storage.identities(names)
    faulty_gcs.proxy.set_rules(Rule("delay:0.8", "GET", MEDIA, every=2))
    with ThreadPoolExecutor(2) as pool:
        assert list(pool.map(storage.read, names)) == [b"y"] * 6


def test_uploads_to_an_endpoint_that_hangs_mid_run_end_in_bounded_time(faulty_gcs, tmp_path):
    for i in range(4):
        (tmp_path / f"{i}.txt").write_text(str(i))
    faulty_gcs.proxy.set_rules(Rule("hang", "POST", UPLOAD))
    t0 = time.monotonic()
    report = sync_tree(tmp_path, faulty_gcs.url("up"), workers=2, policy=QUICK)
    assert time.monotonic() - t0 < 5
    assert sorted(report.failed) == [f"up/{i}.txt" for i in range(4)]
    assert all("stopped answering" in reason for reason in report.failed.values())
    assert sorted(report.permanent) == sorted(report.failed)  # no retry storm from Prefect


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
def hung_runs(tmp_path_factory, gcs_emulator) -> dict[str, tuple[Finished, str]]:
    """preprocess (images, OUT or CSV on gs://), upload and download against one hung
    endpoint, and preprocess against an emulator that answers its listing and then never a
    read, run at once with every default; per command (what the user saw, the endpoint)."""
    tmp = tmp_path_factory.mktemp("hung")
    csv = samples.write_csv(tmp / "rows.csv", ["a.png", "b.png"])
    (tmp / "tree").mkdir()
    (tmp / "tree" / "a.txt").write_text("a")
    bucket = _new_bucket(gcs_emulator)
    for name in ("a.png", "b.png"):
        blob = direct_client(gcs_emulator.url).bucket(bucket).blob(f"imgs/{name}")
        blob.upload_from_string(samples.encode(samples.photos()[0], "PNG"))
    proxy = FaultProxy(gcs_emulator.url, rules=[Rule("hang", "GET", MEDIA)])
    with hung_endpoint() as hung:
        gcs = {"STORAGE_EMULATOR_HOST": hung.url}
        runs = {
            "preprocess": start(
                ["preprocess", "--csv", str(csv), "--images", "gs://bkt/imgs"]
                + ["--out", str(tmp / "out")],
                gcs,
            ),
            "upload": start(["upload", str(tmp / "tree"), "gs://bkt/up"], gcs),
            "preprocess --out gs://": start(
                ["preprocess", "--csv", str(csv), "--images", str(tmp / "tree")]
                + ["--out", "gs://bkt/out", "--min-found", "0"],
                gcs,
            ),
            "preprocess --csv gs://": start(
                ["preprocess", "--csv", "gs://bkt/rows.csv", "--images", str(tmp / "tree")]
                + ["--out", str(tmp / "out3")],
                gcs,
            ),
            "download": start(["download", f"{hung.url}/a.tar.gz", "--dest", str(tmp / "dl")]),
            "preprocess mid-run": start(
                ["preprocess", "--csv", str(csv), "--images", f"gs://{bucket}/imgs"]
                + ["--out", str(tmp / "out2")],
                {"STORAGE_EMULATOR_HOST": proxy.url},
            ),
        }
        urls = {name: proxy.url if "mid-run" in name else hung.url for name in runs}
        try:
            return {name: (run.wait(timeout=BOUND + 60), urls[name]) for name, run in runs.items()}
        finally:
            proxy.stop()


@pytest.mark.parametrize(
    "command,expected",
    [
        ("preprocess", "the storage endpoint {url} did not answer within {read:g} s (tried 3"),
        ("upload", "the storage endpoint {url} did not answer within {read:g} s (tried 3"),
        ("download", "{url}/a.tar.gz: the server {host} did not answer within {read:g} s (3 tri"),
        ("preprocess mid-run", "the storage endpoint {url} stopped answering (nothing for "),
        ("preprocess --out gs://", "the storage endpoint {url} did not answer within {read:g} s"),
        ("preprocess --csv gs://", "the storage endpoint {url} did not answer within {read:g} s"),
    ],
)
def test_a_hung_endpoint_ends_the_command_in_bounded_time_in_one_line(hung_runs, command, expected):
    got, url = hung_runs[command]
    assert got.returncode == 1, got.both
    assert got.seconds < BOUND, got.both
    assert "Traceback" not in got.both, got.both
    [line] = got.error_lines
    assert expected.format(url=url, host=url.removeprefix("http://"), read=READ_TIMEOUT) in line
