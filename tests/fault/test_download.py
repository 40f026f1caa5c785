"""Real wget against a loopback server that cuts, stalls, lies about Range and changes content.

The payload is a real .tar.gz of real photos: archive names are checked as archives too."""

from __future__ import annotations

import hashlib
import io
import os
import re
import tarfile
import time

import pytest
from helpers.http_server import serve

from imgbatch.acquire.download import (
    WgetOptions,
    check_requests,
    classify_exit,
    download,
    run_wget,
)
from imgbatch.errors import PermanentError, TransientError, UsageError
from imgbatch.sampledata.samples import write_tree

FAST = WgetOptions(tries=3, waitretry=0, read_timeout=1, connect_timeout=2)
MIN_SIZE = 1_600_000  # the cuts below fall inside the archive


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


@pytest.fixture
def server():
    with serve() as srv:
        yield srv


def photo_archive(root, seed: int) -> bytes:
    """A .tar.gz of real photos, at least MIN_SIZE bytes (photos hardly compress)."""
    n, buf = 8, io.BytesIO()
    while len(buf.getvalue()) < MIN_SIZE:
        write_tree(root / f"s{seed}-{n}", n, seed=seed, subdirs=2, min_side=900, max_side=1500)
        buf = io.BytesIO()
        with tarfile.open(fileobj=buf, mode="w:gz", compresslevel=1) as tf:
            tf.add(root / f"s{seed}-{n}", arcname="photos")
        n *= 2
    return buf.getvalue()


@pytest.fixture(scope="module")
def data(tmp_path_factory) -> bytes:
    return photo_archive(tmp_path_factory.mktemp("photos"), seed=1)


@pytest.fixture(scope="module")
def other(tmp_path_factory) -> bytes:
    """Another archive: the remote after it changed."""
    return photo_archive(tmp_path_factory.mktemp("other"), seed=2)


def test_cut_mid_body_resumes_within_one_wget_run(server, data, tmp_path):
    server.add("a.tar.gz", data, cut_at=[500_000, 1_200_000])
    argvs = []

    def recording_runner(argv, on_line):
        argvs.append(argv)
        return run_wget(argv, on_line)

    got = download(
        server.url("a.tar.gz"), tmp_path, sha256=sha(data), options=FAST, runner=recording_runner
    )

    assert (tmp_path / "a.tar.gz").read_bytes() == data and got.sha256 == sha(data)
    assert [r.range for r in server.gets("a.tar.gz")] == [None, "bytes=500000-", "bytes=1200000-"]
    assert got.responses == (200, 206, 206) and got.wget_runs == 1
    assert server.bytes_sent == len(data)  # nothing fetched twice
    assert not (tmp_path / "a.tar.gz.part").exists()
    assert "--continue" in argvs[0] and argvs[0][-1] == server.url("a.tar.gz")
    assert f"--output-document={tmp_path / 'a.tar.gz.part'}" in argvs[0]


def test_cut_with_no_tries_left_then_rerun_resumes_the_part(server, data, tmp_path):
    server.add("a.tgz", data, cut_at=[700_000])
    url = server.url("a.tgz")
    with pytest.raises(TransientError, match="network failure") as err:
        download(url, tmp_path, sha256=sha(data), options=WgetOptions(tries=1, waitretry=0))
    assert url in str(err.value)
    assert (tmp_path / "a.tgz.part").read_bytes() == data[:700_000]

    got = download(url, tmp_path, sha256=sha(data), options=FAST)
    assert (tmp_path / "a.tgz").read_bytes() == data
    assert server.gets("a.tgz")[-1].range == "bytes=700000-" and got.responses == (206,)
    assert server.bytes_sent == len(data)


@pytest.mark.parametrize("partial", [0, 500_000])
def test_server_ignoring_range_restarts_without_appending(server, data, tmp_path, partial):
    if partial:
        (tmp_path / "a.tgz.part").write_bytes(data[:partial])  # left by an earlier run
    server.add("a.tgz", data, ignore_range=True, cut_at=[1_500_000])

    got = download(server.url("a.tgz"), tmp_path, sha256=sha(data), options=FAST)

    assert (tmp_path / "a.tgz").read_bytes() == data  # same size: nothing appended twice
    assert got.responses == (200, 200)
    assert server.gets("a.tgz")[1].range == "bytes=1500000-"  # asked, but got the whole file


def test_oversized_partial_already_fully_retrieved_is_refetched(server, data, tmp_path):
    (tmp_path / "a.tgz.part").write_bytes(data + b"stale tail")
    server.add("a.tgz", data)
    progress = []

    got = download(server.url("a.tgz"), tmp_path, options=FAST, on_progress=progress.append)

    assert (tmp_path / "a.tgz").read_bytes() == data
    assert got.responses == (416, 200) and got.wget_runs == 2
    assert any("already fully retrieved" in line for line in progress)
    assert any("restarting from zero" in line for line in progress)


@pytest.mark.parametrize("stale_size", ["full", 800_000])
def test_stale_partial_of_other_content_fails_sha_and_is_refetched(
    server, data, tmp_path, stale_size
):
    stale = os.urandom(len(data) if stale_size == "full" else stale_size)
    (tmp_path / "a.tgz.part").write_bytes(stale)  # an older remote version
    server.add("a.tgz", data)

    got = download(server.url("a.tgz"), tmp_path, sha256=sha(data), options=FAST)

    assert (tmp_path / "a.tgz").read_bytes() == data
    assert got.responses == ((416, 200) if stale_size == "full" else (206, 200))


def test_complete_part_left_before_rename_is_kept(server, data, tmp_path):
    (tmp_path / "a.tgz.part").write_bytes(data)  # crash after wget, before the rename
    server.add("a.tgz", data)
    got = download(server.url("a.tgz"), tmp_path, sha256=sha(data), options=FAST)
    assert got.responses == (416,) and server.bytes_sent == 0
    assert (tmp_path / "a.tgz").read_bytes() == data


@pytest.mark.parametrize("status", [404, 403, 410])
def test_client_errors_are_permanent_and_not_retried(server, tmp_path, status):
    server.add("gone.tar", b"", status=status)
    url = server.url("gone.tar")
    with pytest.raises(PermanentError, match=f"HTTP {status}") as err:
        download(url, tmp_path, options=FAST)
    assert url in str(err.value)
    assert len(server.gets("gone.tar")) == 1
    assert sorted(p.name for p in tmp_path.iterdir()) == []  # no empty .part left behind


def test_503_twice_then_ok_is_retried_with_backoff(server, data, tmp_path):
    server.add("a.tgz", data, fail_times=2)
    got = download(
        server.url("a.tgz"),
        tmp_path,
        sha256=sha(data),
        options=WgetOptions(tries=3, waitretry=1, read_timeout=1),
    )
    gets = server.gets("a.tgz")
    assert [r.status for r in gets] == [503, 503, 200] and got.responses == (503, 503, 200)
    assert gets[1].at - gets[0].at >= 0.9 and gets[2].at - gets[1].at >= 0.9  # wget waited
    assert (tmp_path / "a.tgz").read_bytes() == data


def test_503_until_tries_run_out_is_transient(server, tmp_path):
    server.add("busy.tgz", b"x", fail_times=10)
    with pytest.raises(TransientError, match="HTTP 503") as err:
        download(server.url("busy.tgz"), tmp_path, options=FAST)
    assert server.url("busy.tgz") in str(err.value) and len(server.gets("busy.tgz")) == 3


def test_stalled_server_hits_read_timeout_in_bounded_time(server, data, tmp_path):
    server.add("slow.tgz", data, stall_after=100_000, stall_seconds=5)
    start = time.monotonic()
    with pytest.raises(TransientError, match="timed out") as err:
        download(
            server.url("slow.tgz"),
            tmp_path,
            options=WgetOptions(tries=2, waitretry=0, read_timeout=1),
        )
    assert time.monotonic() - start < 4.5  # 2 tries x 1 s, never the server's 5 s stall
    assert server.url("slow.tgz") in str(err.value)
    assert [r.range for r in server.gets("slow.tgz")] == [None, "bytes=100000-"]
    assert (tmp_path / "slow.tgz.part").read_bytes() == data[:200_000]  # kept for a rerun


def test_remote_changed_between_attempts_restarts_from_zero(server, data, other, tmp_path):
    server.add("a.tgz", data, cut_at=[600_000], content_after_first=other)

    got = download(server.url("a.tgz"), tmp_path, sha256=sha(other), options=FAST)

    assert (tmp_path / "a.tgz").read_bytes() == other
    assert got.responses == (200, 206, 200) and got.wget_runs == 2


def test_remote_no_longer_matching_sha_is_permanent(server, data, other, tmp_path):
    server.add("a.tgz", data, cut_at=[600_000], content_after_first=other)
    with pytest.raises(PermanentError, match="does not match") as err:
        download(server.url("a.tgz"), tmp_path, sha256=sha(data), options=FAST)
    assert server.url("a.tgz") in str(err.value)
    assert len(server.gets("a.tgz")) == 3  # resumed, then one restart from zero, no more
    assert not list(tmp_path.iterdir())


def test_unwritable_destination_fails_before_any_request(server, tmp_path):
    server.add("a.tgz", b"data")
    (tmp_path / "file").write_text("a file, not a folder")
    dest = tmp_path / "file" / "dest"
    start = time.monotonic()
    with pytest.raises(PermanentError, match="cannot write to") as err:
        download(server.url("a.tgz"), dest, options=FAST)
    assert str(dest) in str(err.value)
    assert server.requests == [] and time.monotonic() - start < 1


def test_missing_wget_is_a_usage_error_saying_how_to_install(server, tmp_path):
    server.add("a.tgz", b"x")
    with pytest.raises(UsageError, match="apt-get install wget"):
        download(server.url("a.tgz"), tmp_path, options=WgetOptions(executable="no-such-wget"))
    assert server.requests == []


def test_verified_file_is_not_fetched_again(server, data, tmp_path):
    server.add("a.tgz", data)
    download(server.url("a.tgz"), tmp_path, sha256=sha(data), options=FAST)
    again = download(server.url("a.tgz"), tmp_path, sha256=sha(data), options=FAST)
    assert again.skipped and len(server.gets("a.tgz")) == 1

    (tmp_path / "a.tgz").write_bytes(b"damaged")  # no archive any more: fetched again
    fixed = download(server.url("a.tgz"), tmp_path, sha256=sha(data), options=FAST)
    assert not fixed.skipped and (tmp_path / "a.tgz").read_bytes() == data
    assert (tmp_path / "a.tgz.bad").read_bytes() == b"damaged"  # set aside, not deleted


def test_progress_lines_are_throttled(server, tmp_path):
    server.add("big.bin", os.urandom(10 << 20))  # not an archive name: only size is checked
    every, throttled = [], []
    download(
        server.url("big.bin"),
        tmp_path / "a",
        options=FAST,
        on_progress=every.append,
        progress_interval=0,
    )
    download(
        server.url("big.bin"),
        tmp_path / "b",
        options=FAST,
        on_progress=throttled.append,
        progress_interval=3600,
    )

    def percents(lines):
        return [re.search(r"(\d+)%", line).group(1) for line in lines if "%" in line]

    assert percents(every) == ["30", "60", "90", "100"]  # one line per 3 MiB, then the last
    assert percents(throttled) == ["30", "100"]  # the first, then only the last


@pytest.mark.parametrize(
    "code,status,kind",
    [
        (4, None, TransientError),
        (7, None, TransientError),
        (3, None, PermanentError),
        (8, 404, PermanentError),
        (8, 403, PermanentError),
        (8, 501, PermanentError),
        (8, 503, TransientError),
        (8, 429, TransientError),
        (8, 500, TransientError),
        (5, None, PermanentError),
        (2, None, PermanentError),
    ],
)
def test_exit_status_mapping(code, status, kind):
    assert classify_exit(code, status) is kind


@pytest.mark.parametrize(
    "urls,sums,message",
    [
        (["file:///etc/passwd"], None, "not a downloadable URL"),
        (["http://127.0.0.1/"], None, "no file name"),
        (["http://127.0.0.1/a.tgz"], ["abc"], "not a sha256"),
        (["http://127.0.0.1/a.tgz", "http://127.0.0.1/b.tgz"], ["0" * 64], "one per URL"),
        (["http://127.0.0.1/x/a.tgz", "http://127.0.0.1/y/a.tgz"], None, "same file: a.tgz"),
        ([], None, "no URL"),
    ],
)
def test_bad_arguments_are_usage_errors(urls, sums, message):
    with pytest.raises(UsageError, match=message):
        check_requests(urls, sums)
