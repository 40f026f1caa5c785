"""GCSStorage against a real fake-gcs-server: identities, reads, missing and changed objects,
retries, crc32c checks and an unreachable endpoint."""

from __future__ import annotations

import datetime
import gzip
import pickle
import time
from concurrent.futures import ProcessPoolExecutor, ThreadPoolExecutor

import helpers.gcs as gcs_helpers
import numpy as np
import pytest
from helpers.gcs import LIST, MEDIA, OBJECT, Latency, Rule, crc32c_b64

from imgbatch.cli.local_server import free_port
from imgbatch.compute import parallel
from imgbatch.compute.partition import compute
from imgbatch.compute.reading import Reader
from imgbatch.errors import PermanentError, TransientError, UsageError
from imgbatch.pixels.images import standardize
from imgbatch.pixels.spec import ImageSpec
from imgbatch.sampledata import samples
from imgbatch.storage.base import InvalidPath, open_storage
from imgbatch.storage.gcs import GCSStorage
from imgbatch.storage.gcs_client import RetryPolicy, parse_gs_url

gcs_emulator = gcs_helpers.gcs_emulator
gcs = gcs_helpers.gcs
faulty_gcs = gcs_helpers.faulty_gcs

FAST = RetryPolicy(attempts=3, initial_wait=0.02, max_wait=0.1, client_deadline=0.5, timeout=10)
HOUR = datetime.timedelta(hours=1)
FILES = {"a/one.jpg": b"\xff\xd8first", "a/two.png": b"\x89PNGsecond", "b/three.jpg": b"third"}


def put(bucket, prefix: str, files: dict[str, bytes]) -> None:
    b = bucket.client().bucket(bucket.name)
    for rel, data in files.items():
        b.blob(f"{prefix}/{rel}" if prefix else rel).upload_from_string(data)


def read_in_child(storage: GCSStorage, path: str) -> bytes:
    return storage.read(path)


def test_identities_and_reads(gcs):
    put(gcs, "imgs", FILES)
    put(gcs, "other", {"a/one.jpg": b"not under the prefix"})
    storage = open_storage(gcs.url("imgs"))
    assert isinstance(storage, GCSStorage) and storage.root == gcs.url("imgs")
    paths = [*FILES, "a/missing.jpg", "../escape.jpg"]
    ids = storage.identities(paths)
    assert all(i and i.count("-") == 1 for i in ids[:3]), ids
    assert len(set(ids[:3])) == 3
    assert ids[3:] == [None, "invalid"]
    for rel, data in FILES.items():
        assert storage.read(rel) == data
        assert storage.read(f"./{rel}") == data
    with pytest.raises(FileNotFoundError, match="a/missing.jpg"):
        storage.read("a/missing.jpg")
    with pytest.raises(InvalidPath):
        storage.read("../other/a/one.jpg")


def test_bucket_root_without_prefix(gcs):
    put(gcs, "", FILES)
    storage = GCSStorage(f"gs://{gcs.name}")
    assert storage.identities(list(FILES)) == GCSStorage(f"gs://{gcs.name}/").identities(
        list(FILES)
    )
    assert storage.read("b/three.jpg") == b"third"


def test_changed_object_changes_identity(gcs):
    put(gcs, "imgs", FILES)
    before = GCSStorage(gcs.url("imgs")).identities(list(FILES))
    put(gcs, "imgs", {"a/two.png": b"\x89PNGedited"})
    after = GCSStorage(gcs.url("imgs")).identities(list(FILES))
    assert after[0] == before[0] and after[2] == before[2]
    assert after[1] != before[1]
    put(gcs, "imgs", {"b/three.jpg": b"third"})  # same bytes rewritten: a new generation
    assert GCSStorage(gcs.url("imgs")).identities(["b/three.jpg"])[0] != before[2]


def test_identities_come_from_one_listing(faulty_gcs):
    put(faulty_gcs, "imgs", FILES)
    storage = GCSStorage(faulty_gcs.url("imgs"))
    first = storage.identities(list(FILES))
    second = storage.identities(["b/three.jpg", "a/one.jpg", "nope.jpg"])
    assert second == [first[2], first[0], None]
    proxy = faulty_gcs.proxy
    assert proxy.count("GET", LIST) == 1
    assert proxy.count("GET", OBJECT) == 0


def test_pickled_copy_reads_in_another_process(gcs):
    put(gcs, "imgs", FILES)
    storage = GCSStorage(gcs.url("imgs"))
    assert storage.read("a/one.jpg") == FILES["a/one.jpg"]  # client and listing now exist
    storage.identities(["a/one.jpg"])
    clone = pickle.loads(pickle.dumps(storage))
    assert clone.read("a/two.png") == FILES["a/two.png"]
    with ProcessPoolExecutor(1) as pool:
        assert pool.submit(read_in_child, storage, "b/three.jpg").result() == b"third"


def test_transient_errors_are_retried_then_reported(faulty_gcs):
    put(faulty_gcs, "imgs", FILES)
    proxy = faulty_gcs.proxy
    storage = GCSStorage(faulty_gcs.url("imgs"), policy=FAST)
    proxy.set_rules(
        Rule("status:503", method="GET", path="one.jpg", times=2),
        Rule("reset", method="GET", path="two.png", times=2),
    )
    assert storage.read("a/one.jpg") == FILES["a/one.jpg"]
    assert storage.read("a/two.png") == FILES["a/two.png"]
    assert [r.injected for r in proxy.rules] == [2, 2]
    proxy.set_rules(Rule("status:503", method="GET", path="three.jpg"))
    with pytest.raises(TransientError, match="three.jpg.*gave up after 3 attempts"):
        storage.read("b/three.jpg")
    proxy.set_rules(Rule("status:403", method="GET", path="three.jpg"))
    with pytest.raises(PermanentError, match="403"):
        storage.read("b/three.jpg")


def test_a_connection_the_server_closed_is_replaced_at_once(faulty_gcs):
    """Servers time idle kept-alive connections out; the next GET must not count as a
    failed attempt (with one attempt allowed, a stale connection would fail the read)."""
    put(faulty_gcs, "imgs", FILES)
    proxy = faulty_gcs.proxy
    storage = GCSStorage(faulty_gcs.url("imgs"), policy=RetryPolicy(attempts=1, timeout=10))
    assert storage.read("a/one.jpg") == FILES["a/one.jpg"]
    proxy.drop_connections()
    assert storage.read("a/two.png") == FILES["a/two.png"]
    proxy.drop_connections()
    assert storage.read("b/three.jpg") == FILES["b/three.jpg"]
    assert proxy.count("GET", MEDIA, "^200$") == 3


def test_a_finished_thread_closes_its_connections(gcs):
    """Each I/O thread keeps its own connection; when the thread ends (a pool shut down),
    its socket is closed, not left open for the garbage collector."""
    import gc
    import threading

    from imgbatch.storage import gcs_read

    put(gcs, "imgs", FILES)
    storage = GCSStorage(gcs.url("imgs"))
    sockets = []

    def read() -> None:
        assert storage.read("a/one.jpg") == FILES["a/one.jpg"]
        sockets.extend(conn.sock for conn in gcs_read._local.conns.values())

    thread = threading.Thread(target=read)
    thread.start()
    thread.join()
    gc.collect()
    assert len(sockets) == 1
    assert sockets[0].fileno() == -1  # closed


def test_a_rejected_token_is_refreshed_once_per_read(faulty_gcs, monkeypatch):
    """Real GCS needs OAuth, which cannot run here: google-auth's own Credentials with a
    refresh handler stand in, and the proxy answers 401 as GCS does to a revoked token."""
    from google.oauth2.credentials import Credentials

    from imgbatch.storage import gcs_read

    tokens: list[str] = []

    def refresh_handler(request, scopes):
        tokens.append(f"token-{len(tokens) + 2}")
        return tokens[-1], datetime.datetime.now(datetime.UTC).replace(tzinfo=None) + HOUR

    monkeypatch.setattr(
        gcs_read,
        "_credentials",
        lambda base: Credentials("token-1", refresh_handler=refresh_handler),
    )
    put(faulty_gcs, "imgs", FILES)
    proxy = faulty_gcs.proxy
    storage = GCSStorage(faulty_gcs.url("imgs"), policy=FAST)
    proxy.set_rules(Rule("status:401", method="GET", path="one.jpg", times=1))
    assert storage.read("a/one.jpg") == FILES["a/one.jpg"]
    assert tokens == ["token-2"]
    assert proxy.count("GET", "one.jpg") == 2
    proxy.set_rules(Rule("status:401:revoked", method="GET", path="two.png"))
    with pytest.raises(PermanentError, match="two.png: 401 .*revoked"):
        storage.read("a/two.png")
    assert tokens == ["token-2", "token-3"]  # refreshed once, then reported: no loop
    assert proxy.count("GET", "two.png") == 2


def test_corrupted_download_is_detected_and_retried(faulty_gcs):
    data = bytes(range(256)) * 64
    put(faulty_gcs, "imgs", {"x.bin": data})
    proxy = faulty_gcs.proxy
    proxy.set_rules(Rule("corrupt_response", method="GET", path="x.bin", times=1))
    assert GCSStorage(faulty_gcs.url("imgs"), policy=FAST).read("x.bin") == data
    assert proxy.rules[0].injected == 1
    assert proxy.count("GET", "x.bin") == 2


def test_missing_bucket_is_permanent(gcs):
    with pytest.raises(PermanentError, match="does not exist"):
        GCSStorage("gs://no-such-bucket-here/x", policy=FAST).identities(["a.jpg"])


@pytest.mark.parametrize(
    "url", ["s3://b/p", "gs://", "gs://UPPER/p", "gs://b/p", "gs://ok-bucket/../x", "/local"]
)
def test_bad_urls_are_usage_errors(url):
    with pytest.raises(UsageError):
        parse_gs_url(url)


def test_url_parsing():
    assert parse_gs_url("gs://my-bucket") == ("my-bucket", "")
    assert parse_gs_url("gs://my-bucket/a/b/") == ("my-bucket", "a/b")
    assert parse_gs_url("gs://my.bucket_1//a//b") == ("my.bucket_1", "a/b")


def test_refused_endpoint_fails_fast_naming_it(monkeypatch):
    closed = f"http://127.0.0.1:{free_port()}"
    monkeypatch.setenv("STORAGE_EMULATOR_HOST", closed)
    t0 = time.monotonic()
    with pytest.raises(PermanentError) as info:
        GCSStorage("gs://some-bucket/imgs").identities(["a.jpg"])  # the default policy
    assert time.monotonic() - t0 < 15
    assert str(info.value) == (
        f"cannot reach the storage endpoint {closed} (connection refused): "
        "is STORAGE_EMULATOR_HOST right?"
    )


def test_endpoint_that_answered_once_keeps_its_retries(faulty_gcs):
    put(faulty_gcs, "imgs", FILES)
    storage = GCSStorage(faulty_gcs.url("imgs"), policy=FAST)
    proxy = faulty_gcs.proxy
    proxy.set_rules(Rule("status:503", method="GET", path=LIST, times=2))
    assert storage.identities(["a/one.jpg"])[0]
    assert proxy.rules[0].injected == 2
    proxy.stop()  # the endpoint now refuses connections: a blip, not a wrong address
    with pytest.raises(TransientError, match="one.jpg.*gave up after 3 attempts"):
        storage.read("a/one.jpg")
    with pytest.raises(TransientError, match="listing.*gave up after 3 attempts"):
        GCSStorage(faulty_gcs.url("imgs"), policy=FAST).identities(["a/one.jpg"])


def test_bytes_are_checked_against_the_listing(gcs):
    put(gcs, "imgs", FILES)
    storage = GCSStorage(gcs.url("imgs"), policy=FAST)
    listed = storage.identities(["a/one.jpg"])[0]
    assert listed.endswith(crc32c_b64(FILES["a/one.jpg"]))
    put(gcs, "imgs", {"a/one.jpg": b"\xff\xd8replaced after the listing"})
    with pytest.raises(TransientError, match=r"crc32c of the bytes .* != listed"):
        storage.read("a/one.jpg")
    assert GCSStorage(gcs.url("imgs")).read("a/one.jpg") == b"\xff\xd8replaced after the listing"


def test_gzip_encoded_object_reads_as_its_content(gcs):
    content = b"\x89PNG" + bytes(range(256)) * 20
    blob = gcs.client().bucket(gcs.name).blob("imgs/z.png")
    blob.content_encoding = "gzip"
    blob.upload_from_string(gzip.compress(content))
    storage = GCSStorage(gcs.url("imgs"), policy=FAST)
    storage.identities(["z.png"])
    assert storage.read("z.png") == content


def test_reads_share_one_pool_and_see_the_injected_latency(faulty_gcs):
    put(faulty_gcs, "imgs", FILES)
    proxy = faulty_gcs.proxy
    proxy.set_latency(Latency(0.2, method="GET", path=MEDIA))
    storage = GCSStorage(faulty_gcs.url("imgs"))
    with ThreadPoolExecutor(3) as pool:
        t0 = time.monotonic()
        got = list(pool.map(storage.read, FILES))
        took = time.monotonic() - t0
    assert got == list(FILES.values())
    assert 0.2 <= took < 0.6  # three reads at once, each held 0.2 s: in parallel, not in turn
    assert proxy.count("GET", MEDIA, "^200$") == 3


def test_process_decoding_reads_gs_in_fetch_processes(gcs, tmp_path):
    rels = samples.write_tree(tmp_path, 40, seed=5, min_side=48, max_side=120)
    put(gcs, "imgs", {r: (tmp_path / r).read_bytes() for r in rels})
    reader = Reader.for_decoders("processes", True, 2)
    assert (reader.processes, reader.threads) == (1, parallel.io_threads(True, 2))
    rows = [*rels, "gone.jpg", rels[0]]
    spec = ImageSpec(size=16)
    cpu = parallel.decode_pool("processes", 2)
    images, outcomes = compute(rows, GCSStorage(gcs.url("imgs")), spec, cpu, reader)
    assert [o.status for o in outcomes] == ["ok"] * len(rels) + ["missing", "ok"]
    assert "gone.jpg" in outcomes[-2].error
    for i in (0, 17, len(rows) - 1):
        expected, _ = standardize((tmp_path / rows[i]).read_bytes(), spec)
        assert np.array_equal(images[i], expected)
    assert not images[-2].any()
