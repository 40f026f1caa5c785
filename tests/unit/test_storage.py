"""The storage layer: the scheme table, the import layering, and the read pipeline's window."""

from __future__ import annotations

import subprocess
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest

from imgbatch.compute import parallel
from imgbatch.compute.partition import compute
from imgbatch.compute.reading import IMAGES_PER_CHUNK, Reader, Window
from imgbatch.errors import UsageError
from imgbatch.pixels.images import standardize
from imgbatch.pixels.spec import ImageSpec
from imgbatch.storage.base import SCHEMES, LocalStorage, open_storage
from imgbatch.storage.gcs import GCSStorage
from imgbatch.storage.urls import GCS_SCHEME, is_gcs_url

SPEC = ImageSpec(size=16)


def test_scheme_table_picks_the_storage(tmp_path):
    assert set(SCHEMES) == {GCS_SCHEME, ""}
    local = open_storage(str(tmp_path))
    assert isinstance(local, LocalStorage) and local.root == str(tmp_path.resolve())
    assert local.remote is False
    remote = open_storage("gs://my-bucket/some/prefix/")
    assert isinstance(remote, GCSStorage) and remote.remote is True
    assert remote.root == "gs://my-bucket/some/prefix"


@pytest.mark.parametrize(
    ("root", "message"),
    [
        ("s3://bucket/prefix", "unsupported scheme; use a folder or gs://"),
        ("GS://bucket/prefix", "unsupported scheme"),
        ("", "must be a folder or a URL"),
        ("/no/such/folder", "is not a readable folder"),
        ("gs://Bad_Bucket/p", "not a valid bucket name"),
    ],
)
def test_bad_roots_are_one_line_usage_errors(root, message):
    with pytest.raises(UsageError, match=message) as info:
        open_storage(root)
    assert "\n" not in str(info.value)


def test_is_gcs_url():
    assert is_gcs_url("gs://b/p") and is_gcs_url("gs://b")
    assert not is_gcs_url("/data/gs://x") and not is_gcs_url("s3://b") and not is_gcs_url(None)


def _modules_after(import_line: str) -> set[str]:
    code = f"import sys\n{import_line}\nprint('\\n'.join(sorted(sys.modules)))"
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    return set(proc.stdout.split())


def test_local_storage_never_loads_the_google_client():
    loaded = _modules_after(
        "import imgbatch.storage.base, imgbatch.compute.partition, imgbatch.plan.run_plan"
    )
    assert "imgbatch.storage.base" in loaded
    google = ("google", "imgbatch.storage.gcs_client", "imgbatch.storage.gcs")
    assert not {m for m in loaded if m.startswith(google)}


def test_gcs_modules_do_not_import_the_storage_factory():
    loaded = _modules_after("import imgbatch.storage.gcs, imgbatch.acquire.upload")
    assert {
        "imgbatch.storage.gcs_client",
        "imgbatch.storage.gcs_read",
        "imgbatch.storage.relpath",
    } <= loaded
    assert "imgbatch.storage.base" not in loaded


def test_io_threads_follow_decoders_and_source():
    """At a 40 ms GET, the threads chosen for 16 workers out-fetch their ~2,900 images/s."""
    assert parallel.io_threads(True, 16) / 0.040 >= 2900
    assert parallel.io_threads(True, 1) >= parallel.IO_MIN
    assert parallel.io_threads(True, 1000) == parallel.IO_MAX
    assert parallel.io_threads(False, 2) < parallel.io_threads(True, 2)
    assert parallel.io_threads(False, 64) == parallel.LOCAL_IO_MAX


class CountingStorage(LocalStorage):
    """A real local folder that counts reads, to watch how far reads run ahead."""

    def __init__(self, root) -> None:
        super().__init__(root)
        self.reads = 0
        self._count_lock = threading.Lock()

    def read(self, path: str) -> bytes:
        with self._count_lock:
            self.reads += 1
        return super().read(path)


class GatedPool(ThreadPoolExecutor):
    """A real decode pool whose work waits until the test opens the gate."""

    def __init__(self) -> None:
        super().__init__(2)
        self.gate = threading.Event()

    def submit(self, fn, /, *args, **kwargs):
        def gated():
            self.gate.wait(60)
            return fn(*args, **kwargs)

        return super().submit(gated)


def _settle(storage: CountingStorage, timeout: float = 10.0) -> int:
    """The read count once it stops moving."""
    last, deadline = -1, time.monotonic() + timeout
    while storage.reads != last and time.monotonic() < deadline:
        last = storage.reads
        time.sleep(0.3)
    return storage.reads


def test_reads_run_ahead_of_a_stalled_decoder_by_the_window_only(make_dataset):
    _, root, paths = make_dataset(8)
    rows = (paths * 40)[: 12 * IMAGES_PER_CHUNK]
    storage = CountingStorage(root)
    window = Window(reading=2, decoding=3)
    cpu, io = GatedPool(), ThreadPoolExecutor(4)
    result: dict = {}
    worker = threading.Thread(
        target=lambda: result.update(out=compute(rows, storage, SPEC, cpu, io, window))
    )
    worker.start()
    try:
        ahead = _settle(storage)
        # decoding is stalled: the decode window is full and the next chunks are read, no more
        assert ahead == (window.reading + window.decoding) * IMAGES_PER_CHUNK < len(rows)
    finally:
        cpu.gate.set()
        worker.join(60)
    images, outcomes = result["out"]
    assert storage.reads == len(rows)
    assert [o.status for o in outcomes] == ["ok"] * len(rows)
    for i in (0, IMAGES_PER_CHUNK * 5 + 3, len(rows) - 1):
        expected, _ = standardize(Path(root, rows[i]).read_bytes(), SPEC)
        assert np.array_equal(images[i], expected)


def test_remote_reads_move_to_fetch_processes_only_with_process_decoding():
    assert parallel.fetch_processes("processes", True, 16) == 4
    assert parallel.fetch_processes("processes", True, 5) == 2
    assert parallel.fetch_processes("threads", True, 4) == 0
    assert parallel.fetch_processes("processes", False, 16) == 0
    local = Reader.for_decoders("processes", False, 16)
    assert local.processes == 0 and local.threads == parallel.LOCAL_IO_MAX


def test_window_covers_the_io_threads_and_the_decoders():
    w = Window.sized(io_threads=128, decode_workers=16)
    assert (w.reading - 1) * IMAGES_PER_CHUNK >= 128 and w.decoding == 32


def test_clean_relative_normalizes_as_purepath_does_and_refuses_escapes():
    """The fast string version agrees with PurePosixPath on every short mix of the tricky
    pieces (slashes, backslashes, dots, spaces), refusals included."""
    from itertools import product
    from pathlib import PurePosixPath

    from imgbatch.storage.relpath import InvalidPath, clean_relative

    def by_purepath(path: str) -> str:
        if not path.strip():
            return "refused"
        p = PurePosixPath(path.strip().replace("\\", "/"))
        return "refused" if p.is_absolute() or ".." in p.parts else str(p)

    def ours(path: str) -> str:
        try:
            return clean_relative(path)
        except InvalidPath:
            return "refused"

    pieces = ["a", "b.jpg", "/", "\\", ".", "..", "//", " ", "c d"]
    mixes = ["".join(m) for k in range(1, 5) for m in product(pieces, repeat=k)]
    assert len(mixes) == 7380
    assert [ours(m) for m in mixes] == [by_purepath(m) for m in mixes]
    assert ours("cat/../../etc/passwd") == "refused" and ours("cat//./x.jpg") == "cat/x.jpg"
