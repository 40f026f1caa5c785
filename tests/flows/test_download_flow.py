"""download-archives on a real Prefect server: retries only when they can help, bounded
concurrency, progress in the run log, and the `imgbatch download` command."""

from __future__ import annotations

import hashlib
import io
import tarfile
import time
from pathlib import Path

import pytest
from helpers.http_server import serve
from prefect import get_client
from prefect.client.schemas.actions import GlobalConcurrencyLimitCreate
from prefect.client.schemas.filters import LogFilter, LogFilterFlowRunId
from prefect.logging.handlers import APILogHandler

from imgbatch.cli.main import main
from imgbatch.errors import PermanentError
from imgbatch.flows.download import download_archives
from imgbatch.params import DownloadParams
from imgbatch.sampledata.samples import write_tree
from imgbatch.tasks.download import DOWNLOAD_LIMIT

FAST = {"tries": 2, "waitretry": 0, "read_timeout": 1, "retry_delay_seconds": 0.2}


def run(urls: list[str], dest: str, return_state: bool = True, **kw):
    """The download-archives flow with these parameters; its final state."""
    return download_archives(DownloadParams(urls=urls, dest=dest, **kw), return_state=return_state)


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def tree_bytes(root: Path) -> dict[str, bytes]:
    return {
        p.relative_to(root).as_posix(): p.read_bytes()
        for p in sorted(root.rglob("*"))
        if p.is_file()
    }


@pytest.fixture(scope="module")
def photos(tmp_path_factory) -> tuple[Path, bytes]:
    """Real photos and a .tar.gz of them (as bytes to serve)."""
    root = tmp_path_factory.mktemp("photos")
    write_tree(root, 4, seed=5, subdirs=2)
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as tf:
        tf.add(root, arcname="images")
    return root, buf.getvalue()


@pytest.fixture
def server():
    with serve() as srv:
        yield srv


def run_logs(state) -> list[str]:
    APILogHandler().flush()  # send queued logs before reading them back
    with get_client(sync_client=True) as client:
        logs = client.read_logs(
            LogFilter(flow_run_id=LogFilterFlowRunId(any_=[state.state_details.flow_run_id]))
        )
    return [log.message for log in logs]


def test_downloads_verifies_and_extracts(prefect_server, server, photos, tmp_path):
    root, archive = photos
    server.add("train.tar.gz", archive, cut_at=[len(archive) // 2])
    server.add("test.tar.gz", archive)
    dest = tmp_path / "dl"

    state = run(
        [server.url("train.tar.gz"), server.url("test.tar.gz")],
        str(dest),
        sha256=[sha(archive), sha(archive)],
        extract=True,
        **FAST,
        return_state=True,
    )

    assert state.is_completed(), state.message
    results = state.result()
    assert [Path(r["path"]).name for r in results] == ["train.tar.gz", "test.tar.gz"]
    assert [tuple(r["responses"]) for r in results] == [(200, 206), (200,)]
    # Both archives hold images/...: they merge into DEST/images, as `tar -xzf` would.
    assert tree_bytes(dest / "images") == tree_bytes(root)
    assert [r["extracted"] for r in results] == [str(dest), str(dest)]
    assert sorted(p.name for p in dest.iterdir()) == ["images", "test.tar.gz", "train.tar.gz"]
    logs = run_logs(state)
    assert any("Retrying" in m for m in logs) and any("100%" in m for m in logs)


def test_503_is_retried_by_prefect_with_backoff(prefect_server, server, photos, tmp_path):
    server.add("a.tgz", photos[1], fail_times=2)
    options = {**FAST, "tries": 1}  # wget gives up at once: each request is one task run

    state = run([server.url("a.tgz")], str(tmp_path), retries=3, **options, return_state=True)

    assert state.is_completed(), state.message
    gets = server.gets("a.tgz")
    assert [r.status for r in gets] == [503, 503, 200]
    # backoff(0.2) = 0.2 s then 0.4 s, with +-50% jitter
    assert gets[1].at - gets[0].at >= 0.1 and gets[2].at - gets[1].at >= 0.2
    assert (tmp_path / "a.tgz").read_bytes() == photos[1]


def test_404_fails_at_once_and_others_still_complete(prefect_server, server, photos, tmp_path):
    server.add("ok.tgz", photos[1])
    missing = server.url("missing.tgz")

    state = run(
        [missing, server.url("ok.tgz")], str(tmp_path), retries=3, **FAST, return_state=True
    )

    assert state.is_failed()
    exc = state.result(raise_on_failure=False)
    assert isinstance(exc, PermanentError)
    assert f"{missing}: HTTP 404" in str(exc) and "1 of 2 archives failed" in str(exc)
    assert len(server.gets("missing.tgz")) == 1  # neither wget nor Prefect retried it
    assert (tmp_path / "ok.tgz").read_bytes() == photos[1]


def test_unwritable_destination_fails_fast(prefect_server, server, tmp_path):
    server.add("a.tgz", b"x")
    (tmp_path / "file").write_text("not a folder")
    start = time.monotonic()
    state = run([server.url("a.tgz")], str(tmp_path / "file" / "dl"), **FAST, return_state=True)
    assert state.is_failed() and "cannot write to" in str(state.result(raise_on_failure=False))
    assert server.requests == [] and time.monotonic() - start < 10


@pytest.mark.parametrize("parallel", [1, 3])
def test_parallel_downloads_are_bounded_by_the_parameter(
    prefect_server, server, tmp_path, parallel
):
    """`parallel` is a field of the model, so a deployment run (which can only set fields)
    bounds its downloads too."""
    urls = []
    for i in range(4):  # each takes ~0.3 s, so they would all overlap without a bound
        server.add(f"p{i}.bin", bytes(1 << 20), chunk_size=64 << 10, chunk_delay=0.02)
        urls.append(server.url(f"p{i}.bin"))

    state = run(urls, str(tmp_path), parallel=parallel, **FAST)

    assert state.is_completed(), state.message
    assert server.max_in_flight == parallel


def test_global_concurrency_limit_is_used_when_it_exists(prefect_server, server, tmp_path):
    urls = []
    for i in range(2):
        server.add(f"g{i}.bin", bytes(1 << 20), chunk_size=64 << 10, chunk_delay=0.02)
        urls.append(server.url(f"g{i}.bin"))
    with get_client(sync_client=True) as client:
        client.create_global_concurrency_limit(
            GlobalConcurrencyLimitCreate(name=DOWNLOAD_LIMIT, limit=1)
        )
        try:
            state = run(urls, str(tmp_path), **FAST, return_state=True)
        finally:
            client.delete_global_concurrency_limit_by_name(DOWNLOAD_LIMIT)

    assert state.is_completed(), state.message
    assert server.max_in_flight == 1 and len(server.gets("g1.bin")) == 1


def test_cli_downloads_and_extracts(prefect_server, server, photos, tmp_path, capsys):
    root, archive = photos
    server.add("set.tgz", archive)
    code = main(
        [
            "download",
            server.url("set.tgz"),
            "--dest",
            str(tmp_path),
            "--sha256",
            sha(archive),
            "--extract",
            "--tries",
            "2",
        ]
    )
    out = capsys.readouterr().out
    assert code == 0
    assert f"sha256 {sha(archive)}" in out and f"extracted to {tmp_path}" in out
    assert tree_bytes(tmp_path / "images") == tree_bytes(root)


def test_html_page_is_not_retried_and_a_rerun_after_the_fix_succeeds(
    prefect_server, server, photos, tmp_path
):
    server.add("a.tar.gz", b"<html><body>Service moved</body></html>", content_type="text/html")
    url = server.url("a.tar.gz")

    state = run([url], str(tmp_path), retries=3, **FAST)

    assert state.is_failed()
    exc = state.result(raise_on_failure=False)
    assert isinstance(exc, PermanentError)
    assert f"{url}: the server sent an HTML page, not a gzip archive" in str(exc)
    assert len(server.gets("a.tar.gz")) == 1 and not (tmp_path / "a.tar.gz").exists()

    server.add("a.tar.gz", photos[1])
    again = run([url], str(tmp_path), extract=True, **FAST)
    assert again.is_completed(), again.message
    assert tree_bytes(tmp_path / "images") == tree_bytes(photos[0])


def test_cli_failure_names_url_and_reason(prefect_server, server, tmp_path, capsys):
    url = server.url("nope.tgz")
    code = main(["download", url, "--dest", str(tmp_path), "--tries", "1"])
    err = capsys.readouterr().err
    assert code == 1 and f"{url}: HTTP 404" in err


@pytest.mark.parametrize(
    "argv,message",
    [
        (["notaurl"], "not a downloadable URL"),
        (["http://127.0.0.1/a.tgz", "--sha256", "beef"], "not a sha256"),
        (["http://127.0.0.1/a.tgz", "--parallel", "0"], "--parallel: Input should be greater"),
        (["http://127.0.0.1/a.zip", "--extract"], "not a tar archive name"),
    ],
)
def test_cli_bad_arguments_are_one_line_before_any_work(tmp_path, capsys, argv, message):
    code = main(["download", *argv, "--dest", str(tmp_path / "d")])
    err = capsys.readouterr().err.strip()
    assert code == 2 and message in err and len(err.splitlines()) == 1
