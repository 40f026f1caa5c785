"""Upload faults: a real fake-gcs-server behind the project's fault proxy.

Every test ends by reading each object straight from the emulator and comparing its bytes
and its reported crc32c with the local file, so a lost or corrupted object fails it.
"""

from __future__ import annotations

import os
import re
import shutil
from dataclasses import asdict
from pathlib import Path

import pytest
from helpers.gcs import LIST, OBJECT, UPLOAD, GCSBucket, Rule, crc32c_b64

from imgbatch.acquire.upload import LocalFile, sync_file, sync_tree
from imgbatch.errors import PermanentError, TransientError, UsageError
from imgbatch.params import UploadParams
from imgbatch.sampledata.samples import write_tree
from imgbatch.storage.gcs_client import RetryPolicy, list_prefix, make_client

FAST = RetryPolicy(attempts=4, initial_wait=0.02, max_wait=0.1, client_deadline=1.0, timeout=20)
BUDGET = RetryPolicy(attempts=3, initial_wait=0.02, max_wait=0.05, client_deadline=0.3, timeout=20)
PREFIX = "data/images"


@pytest.fixture(scope="module")
def tree(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Real photos in sub-folders plus a few small and empty files."""
    root = tmp_path_factory.mktemp("tree")
    write_tree(root, 16, seed=3)
    (root / "notes").mkdir()
    (root / "notes/readme.txt").write_text("small text file\n")
    (root / "notes/empty.bin").write_bytes(b"")
    (root / "notes/deep/er").mkdir(parents=True)
    (root / "notes/deep/er/x.csv").write_text("a,b\n1,2\n")
    return root


def local_objects(root: Path, prefix: str = PREFIX) -> dict[str, bytes]:
    return {
        f"{prefix}/{p.relative_to(root).as_posix()}": p.read_bytes()
        for p in sorted(root.rglob("*"))
        if p.is_file()
    }


def assert_mirrors(bucket: GCSBucket, root: Path, prefix: str = PREFIX) -> None:
    """Every local file is an object with the same bytes and the crc32c the server reports."""
    expected = local_objects(root, prefix)
    assert bucket.objects(prefix + "/") == expected
    listed = {b.name: b.crc32c for b in bucket.client().list_blobs(bucket.name, prefix=prefix)}
    assert listed == {name: crc32c_b64(data) for name, data in expected.items()}


def names_with(notes: dict[str, list[str]], pattern: str) -> set[str]:
    return {n for n, ns in notes.items() if any(re.search(pattern, x) for x in ns)}


def once_each(action: str, victims: list[str], method: str = "POST") -> list[Rule]:
    """One injection of `action` into the first upload of each victim (matched by name)."""
    return [Rule(action, method=method, path=UPLOAD, body=v.encode(), times=1) for v in victims]


VICTIMS = ["img_000001", "img_000006", "img_000011", "img_000014"]


def test_503_429_and_resets_end_with_every_object_intact(faulty_gcs, tree):
    proxy = faulty_gcs.proxy
    proxy.set_rules(
        Rule("status:503", method="POST", path=UPLOAD, every=3),
        Rule("status:429", method="POST", path=UPLOAD, times=3),
        Rule("reset", method="POST", path=UPLOAD, every=4, times=4),
        Rule("status:503", method="GET", path=LIST, times=1),
    )
    report = sync_tree(tree, faulty_gcs.url(PREFIX), workers=4, policy=FAST)
    assert report.ok, report.failed
    assert sorted(report.uploaded) == sorted(local_objects(tree))
    assert all(r.injected > 0 for r in proxy.rules), [(r.action, r.injected) for r in proxy.rules]
    assert_mirrors(faulty_gcs, tree)


def test_lost_response_then_412_counts_as_present_after_crc32c_check(faulty_gcs, tree):
    proxy = faulty_gcs.proxy
    proxy.set_rules(*once_each("reset_after", VICTIMS[:3]))
    report = sync_tree(tree, faulty_gcs.url(PREFIX), workers=4, policy=FAST)
    assert report.ok, report.failed
    n = len(local_objects(tree))
    assert len(report.uploaded) == n
    assert [r.injected for r in proxy.rules] == [1, 1, 1]
    assert proxy.count("POST", UPLOAD, "^412$") == 3
    found = names_with(report.recovered, "412, already present with matching crc32c")
    assert sorted(name.split("/")[-1][:10] for name in found) == VICTIMS[:3]
    # every object written exactly once: the retried requests were refused, not applied twice
    assert proxy.count("POST", UPLOAD, "^200$") + 3 == n
    assert_mirrors(faulty_gcs, tree)


def test_412_over_different_bytes_replaces_them(gcs, tree):
    """An object that appeared after the listing with other bytes: 412, then overwritten."""
    src = tree / "notes/readme.txt"
    name = f"{PREFIX}/notes/readme.txt"
    gcs.client().bucket(gcs.name).blob(name).upload_from_string(b"someone else's bytes")
    bucket = make_client().bucket(gcs.name)
    outcome = sync_file(bucket, LocalFile(str(src), name, src.stat().st_size), None, FAST)
    assert outcome.status == "uploaded", outcome
    assert any("412 and the stored object differs" in n for n in outcome.notes)
    assert gcs.objects(name) == {name: src.read_bytes()}


def test_corrupted_body_is_deleted_and_resent(faulty_gcs, tree):
    proxy = faulty_gcs.proxy
    proxy.set_rules(*once_each("corrupt", VICTIMS))
    report = sync_tree(tree, faulty_gcs.url(PREFIX), workers=4, policy=FAST)
    assert report.ok, report.failed
    assert [r.injected for r in proxy.rules] == [1, 1, 1, 1]
    found = names_with(report.recovered, r"stored crc32c .* != local .*deleted, re-sending")
    assert sorted(name.split("/")[-1][:10] for name in found) == VICTIMS
    assert proxy.count("DELETE", OBJECT, "^(200|204)$") == 4
    assert_mirrors(faulty_gcs, tree)


def test_corrupted_resumable_upload_is_resent(faulty_gcs, tmp_path):
    """Files over 8 MiB go resumable: the client's own crc32c check fires, we re-send."""
    (tmp_path / "big.bin").write_bytes(os.urandom(9 << 20))
    proxy = faulty_gcs.proxy
    proxy.set_rules(Rule("corrupt", method="PUT", path=UPLOAD, times=1))
    report = sync_tree(tmp_path, faulty_gcs.url(PREFIX), policy=FAST)
    assert report.ok and report.uploaded == [f"{PREFIX}/big.bin"], report.failed
    assert proxy.rules[0].injected == 1
    assert names_with(report.recovered, "DataCorruption") == {f"{PREFIX}/big.bin"}
    assert_mirrors(faulty_gcs, tmp_path)


def test_server_side_crc32c_rejection_is_resent(faulty_gcs, tree):
    """Real GCS refuses a body whose crc32c differs from the one we send (400): re-send."""
    message = 'Provided CRC32C "AAAAAA==" doesn\'t match calculated CRC32C "BBBBBB==".'
    proxy = faulty_gcs.proxy
    proxy.set_rules(*once_each(f"status:400:{message}", VICTIMS[:2]))
    report = sync_tree(tree, faulty_gcs.url(PREFIX), workers=2, policy=FAST)
    assert report.ok, report.failed
    found = names_with(report.recovered, "corrupted in transit")
    assert sorted(name.split("/")[-1][:10] for name in found) == VICTIMS[:2]
    assert_mirrors(faulty_gcs, tree)


def test_rerun_after_success_costs_one_listing_and_no_upload(faulty_gcs, tree):
    first = sync_tree(tree, faulty_gcs.url(PREFIX), workers=4, policy=FAST)
    assert first.ok and len(first.uploaded) == len(local_objects(tree))
    proxy = faulty_gcs.proxy
    proxy.clear()
    again = sync_tree(tree, faulty_gcs.url(PREFIX), workers=4, policy=FAST)
    assert again.uploaded == [] and again.failed == {}
    assert sorted(again.skipped) == sorted(local_objects(tree))
    assert again.bytes_skipped == sum(len(b) for b in local_objects(tree).values())
    # the client may fetch bucket metadata once in the background (tracing); nothing else
    requests = [s for s in proxy.log if not re.match(r"^/storage/v1/b/[^/?]+\?", s.path)]
    assert [(s.method, bool(re.search(LIST, s.path))) for s in requests] == [("GET", True)]


def test_changed_local_file_is_the_only_one_resent(gcs, tmp_path, tree):
    root = tmp_path / "copy"
    shutil.copytree(tree, root)
    assert sync_tree(root, gcs.url(PREFIX), policy=FAST).ok
    (root / "notes/readme.txt").write_text("edited, same length!\n"[:16])  # same size
    (root / "notes/new.txt").write_text("new file")
    report = sync_tree(root, gcs.url(PREFIX), policy=FAST)
    assert sorted(report.uploaded) == [f"{PREFIX}/notes/new.txt", f"{PREFIX}/notes/readme.txt"]
    assert len(report.skipped) == len(local_objects(tree)) - 1
    assert_mirrors(gcs, root)


def test_object_that_always_fails_is_named_after_its_budget(faulty_gcs, tree):
    victim = "d1/img_000005"
    bad = next(n for n in local_objects(tree) if victim in n)
    proxy = faulty_gcs.proxy
    proxy.set_rules(Rule("status:503", method="POST", path=UPLOAD, body=victim.encode()))
    report = sync_tree(tree, faulty_gcs.url(PREFIX), workers=4, policy=BUDGET)
    assert list(report.failed) == [bad]
    assert f"gave up after {BUDGET.attempts} attempts" in report.failed[bad]
    assert len(report.uploaded) == len(local_objects(tree)) - 1
    assert proxy.rules[0].injected >= BUDGET.attempts  # plus the client's own retries
    with pytest.raises(TransientError, match=re.escape(f"gs://{faulty_gcs.name}/{bad}")):
        report.raise_for_failures()
    assert bad not in list_prefix(make_client().bucket(faulty_gcs.name), PREFIX, FAST)


def test_permanent_error_is_not_retried(faulty_gcs, tree):
    victim = b"notes/readme.txt"
    proxy = faulty_gcs.proxy
    proxy.set_rules(Rule("status:403", method="POST", path=UPLOAD, body=victim))
    report = sync_tree(tree, faulty_gcs.url(PREFIX), workers=4, policy=FAST)
    assert list(report.failed) == [f"{PREFIX}/notes/readme.txt"]
    assert proxy.rules[0].injected == 1
    with pytest.raises(PermanentError, match="readme.txt"):
        report.raise_for_failures()


def test_missing_bucket_fails_at_the_listing(gcs, tree):
    with pytest.raises(PermanentError, match="does not exist"):
        sync_tree(tree, "gs://no-such-bucket-here/p", policy=FAST)


@pytest.mark.parametrize(
    ("src", "dest", "workers"),
    [("missing-dir", "gs://bucket-ok/p", 2), (".", "s3://b/p", 2), (".", "gs://bucket-ok/p", 0)],
)
def test_bad_arguments_are_usage_errors_before_any_request(faulty_gcs, src, dest, workers):
    with pytest.raises(UsageError):
        sync_tree(src, dest, workers=workers)
    assert faulty_gcs.proxy.log == []


def as_fields(policy: RetryPolicy) -> dict:
    """The upload flow's parameters that set `policy`."""
    return {f"object_{k}": v for k, v in asdict(policy).items()}


def flow_artifacts(flow_run_id) -> list:
    from prefect import get_client
    from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterFlowRunId

    flt = ArtifactFilter(flow_run_id=ArtifactFilterFlowRunId(any_=[flow_run_id]))
    with get_client(sync_client=True) as client:
        return client.read_artifacts(artifact_filter=flt)


def test_flow_uploads_and_reports_progress_in_files_and_bytes(prefect_server, faulty_gcs, tree):
    from imgbatch.flows.upload import upload_tree as upload_flow

    faulty_gcs.proxy.set_rules(Rule("status:503", method="POST", path=UPLOAD, every=4))
    params = UploadParams(
        src_dir=str(tree), dest=faulty_gcs.url(PREFIX), workers=3, **as_fields(FAST)
    )
    state = upload_flow(params, return_state=True)
    assert state.is_completed(), state.message
    n = len(local_objects(tree))
    total = sum(len(b) for b in local_objects(tree).values())
    summary = state.result()
    assert (summary["uploaded"], summary["failed"], summary["bytes_uploaded"]) == (n, 0, total)
    assert_mirrors(faulty_gcs, tree)
    by_type = {}
    for a in flow_artifacts(state.state_details.flow_run_id):
        by_type.setdefault(a.type, []).append(a)
    [progress] = by_type["progress"]
    assert float(progress.data) == 100.0
    assert f"{n}/{n} files" in progress.description
    assert f"{total / 1e6:,.1f} MB of {total / 1e6:,.1f} MB" in progress.description
    [markdown] = by_type["markdown"]
    assert f"uploaded: {n} files" in markdown.data


def test_flow_fails_after_task_retries_naming_the_object(prefect_server, faulty_gcs, tree):
    from imgbatch.flows.upload import upload_tree as upload_flow

    bad = next(n for n in local_objects(tree) if "img_000002" in n)
    proxy = faulty_gcs.proxy
    proxy.set_rules(Rule("status:503", method="POST", path=UPLOAD, body=b"img_000002"))
    params = UploadParams(
        src_dir=str(tree),
        dest=faulty_gcs.url(PREFIX),
        workers=4,
        retries=1,
        retry_delay_seconds=0,
        **as_fields(BUDGET),
    )
    state = upload_flow(params, return_state=True)
    assert state.is_failed()
    with pytest.raises(TransientError, match=re.escape(f"gs://{faulty_gcs.name}/{bad}")):
        state.result()
    # two task runs (one retry), each one listing; the retry re-sent only the failing file
    assert proxy.count("GET", LIST) == 2
    assert proxy.count("POST", UPLOAD, "^200$") == len(local_objects(tree)) - 1
    failed = [a for a in flow_artifacts(state.state_details.flow_run_id) if a.type == "table"]
    assert failed and bad in str(failed[0].data)


def test_cli_upload_then_noop_rerun(prefect_server, gcs, tree, capsys):
    from imgbatch.cli.main import main

    n = len(local_objects(tree))
    assert main(["upload", str(tree), gcs.url(PREFIX), "--workers", "3"]) == 0
    assert f"uploaded {n} files" in capsys.readouterr().out
    assert_mirrors(gcs, tree)
    assert main(["upload", str(tree), gcs.url(PREFIX)]) == 0
    assert f"uploaded 0 files (0 bytes), skipped {n} already there" in capsys.readouterr().out


@pytest.mark.parametrize(
    "argv",
    [
        ["upload", "no/such/dir", "gs://bucket-ok/p"],
        ["upload", ".", "gs://Bad_Bucket/p"],
        ["upload", ".", "/local/path"],
        ["upload", ".", "gs://bucket-ok/p", "--workers", "0"],
        ["upload", ".", "gs://bucket-ok/p", "--retries", "-1"],
    ],
)
def test_cli_bad_arguments_exit_2_before_any_work(faulty_gcs, capsys, argv):
    from imgbatch.cli.main import main

    assert main(argv) == 2
    assert "imgbatch upload: error:" in capsys.readouterr().err
    assert faulty_gcs.proxy.log == []
