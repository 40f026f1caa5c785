"""Each message imgbatch.upstream recognises, produced by the library that writes it: when
an upgrade rewords one, its test fails here instead of a run taking the wrong turn."""

from __future__ import annotations

import io
import os
import resource
import shutil
import signal
import tarfile
from concurrent.futures import ProcessPoolExecutor, ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest
from google.api_core import exceptions as api_exc
from helpers.gcs import UPLOAD, Rule
from helpers.http_server import serve
from helpers.hung import hung_endpoint, refused_port

from imgbatch import upstream
from imgbatch.acquire.download import WgetOptions, run_wget, wget_argv
from imgbatch.storage.gcs_client import make_client

# What GCS answers (400) when an upload's body does not match the crc32c sent with it.
GCS_CRC32C_MESSAGE = 'Provided CRC32C "AAAAAA==" doesn\'t match calculated CRC32C "BBBBBB==".'


@pytest.mark.parametrize("pool", [ThreadPoolExecutor, ProcessPoolExecutor])
def test_a_shut_down_pool_refusing_work_is_recognised(pool):
    executor = pool(1)
    executor.shutdown()
    with pytest.raises(RuntimeError) as err:
        executor.submit(print)
    assert upstream.pool_shut_down(err.value)
    assert not upstream.pool_shut_down(RuntimeError("some other runtime error"))


def test_numpy_short_write_is_recognised(tmp_path: Path):
    """A file size limit makes fwrite stop short, as a full disk does, with no errno."""
    soft, hard = resource.getrlimit(resource.RLIMIT_FSIZE)
    previous = signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
    resource.setrlimit(resource.RLIMIT_FSIZE, (1 << 20, hard))
    try:
        with pytest.raises(OSError) as err, open(tmp_path / "a.npy", "wb") as f:
            np.save(f, np.zeros(4 << 20, np.uint8))
    finally:
        resource.setrlimit(resource.RLIMIT_FSIZE, (soft, hard))
        signal.signal(signal.SIGXFSZ, previous)
    assert upstream.numpy_short_write(err.value), err.value
    assert not upstream.numpy_short_write(OSError(28, "No space left on device"))


def test_a_tar_stream_cut_inside_a_member_is_recognised():
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tf:
        for i in range(2):
            data = os.urandom(20_000)
            member = tarfile.TarInfo(f"f{i}")
            member.size = len(data)
            tf.addfile(member, io.BytesIO(data))
    cut = io.BytesIO(buf.getvalue()[:30_000])
    with pytest.raises(tarfile.ReadError) as err, tarfile.open(fileobj=cut, mode="r|") as tf:
        list(tf)
    assert upstream.tar_ended_early(err.value)
    bad_header = io.BytesIO(b"x" * 1024)
    with pytest.raises(tarfile.ReadError) as other, tarfile.open(fileobj=bad_header, mode="r|"):
        pass
    assert not upstream.tar_ended_early(other.value)


@pytest.mark.skipif(shutil.which("wget") is None, reason="wget is not installed")
def test_wget_keeping_a_larger_local_file_is_recognised(tmp_path: Path):
    part = tmp_path / "a.bin.part"
    part.write_bytes(b"x" * 2000)  # larger than the remote file: nothing left to fetch
    lines: list[str] = []
    with serve() as server:
        server.add("a.bin", b"y" * 1000)
        argv = wget_argv(server.url("a.bin"), part, WgetOptions(tries=1, waitretry=0))
        assert run_wget(argv, lines.append) == 0
    assert sum(map(upstream.wget_kept_local_file, lines)) == 1, lines


def wget_lines(url: str, tmp_path: Path, tries: int) -> list[str]:
    """What real wget prints fetching `url` with `tries` tries and short timeouts."""
    options = WgetOptions(tries=tries, waitretry=0, read_timeout=0.3, connect_timeout=1)
    lines: list[str] = []
    assert run_wget(wget_argv(url, tmp_path / "a.part", options), lines.append) == 4
    return lines


@pytest.mark.skipif(shutil.which("wget") is None, reason="wget is not installed")
def test_wget_failed_tries_a_refusal_and_an_unknown_host_are_recognised(tmp_path: Path):
    with hung_endpoint() as hung:
        lines = wget_lines(f"{hung.url}/a", tmp_path, tries=2)
    assert [upstream.wget_try_failed(line) for line in lines].count(True) == 1, lines
    assert [upstream.wget_try_failed(line) for line in lines].count(False) == 1, lines
    assert not any(map(upstream.wget_refused, lines))
    refused = wget_lines(f"http://127.0.0.1:{refused_port()}/a", tmp_path, tries=3)
    assert sum(map(upstream.wget_refused, refused)) == 1, refused
    assert not any(map(upstream.wget_unresolved, refused))
    unknown = wget_lines("http://archives.example.invalid/a", tmp_path, tries=3)
    assert sum(map(upstream.wget_unresolved, unknown)) == 1, unknown


@pytest.mark.parametrize(("message", "expected"), [(GCS_CRC32C_MESSAGE, True), ("Bad name", False)])
def test_gcs_refusing_a_checksum_is_recognised(faulty_gcs, message, expected):
    """Through the real client: the emulator does not check crc32c, so the proxy answers
    with GCS's words; the client must still hand them over as a 400."""
    faulty_gcs.proxy.set_rules(Rule(f"status:400:{message}", method="POST", path=UPLOAD))
    blob = make_client().bucket(faulty_gcs.name).blob("a.bin")
    with pytest.raises(api_exc.BadRequest) as err:
        blob.upload_from_string(b"hello", checksum="crc32c", retry=None)
    assert upstream.gcs_refused_checksum(err.value) is expected
