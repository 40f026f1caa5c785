"""OUT on gs:// (imgbatch.outstore.gcs) against a real fake-gcs-server, core only (no Prefect):
the same bytes as a local OUT, a rerun that writes nothing, commit records by generation, the
leased one-writer lock (refused, taken over after expiry, lost), and 503/429 mid-run.

The emulator enforces ifGenerationMatch (0 and N) on multipart uploads only (objects under
8 MiB: every commit record and the lock object here), not on resumable uploads, GETs or
DELETEs (measured; docs/decisions/output-store-gcs.md), so no test relies on those.
"""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
import time

import helpers.gcs as gcs_helpers
import numpy as np
import pytest
from helpers.gcs import UPLOAD, Rule

from imgbatch.compute.partition import PartitionSettings, run_partition
from imgbatch.errors import PermanentError
from imgbatch.output import shards
from imgbatch.output.assemble import assemble
from imgbatch.output.ownership import claim_output, dataset_identity
from imgbatch.output.stats import update_run_stats
from imgbatch.output.verify import verify_output
from imgbatch.output.writer_lock import OutputBusy, output_lock, read_holder
from imgbatch.outstore.base import open_output
from imgbatch.outstore.lease import LEASE_ENV, LeaseLost
from imgbatch.pixels.spec import ImageSpec
from imgbatch.plan.run_plan import make_plan
from imgbatch.storage.base import open_storage

gcs_emulator = gcs_helpers.gcs_emulator
gcs = gcs_helpers.gcs
faulty_gcs = gcs_helpers.faulty_gcs

SPEC = ImageSpec(size=16)


def run(csv: str, root: str, out: str) -> tuple[dict, int]:
    """The preprocess steps in this process: (run.json, partitions computed)."""
    dataset = dataset_identity(csv, "image_path", root, SPEC)
    with claim_output(out, dataset, "test"):
        plan = make_plan(csv, "image_path", open_storage(root), SPEC, 10, out)
        todo, _ = shards.split_done(out, plan.partitions)
        settings = PartitionSettings(plan.plan_file, root, out, SPEC, "threads", 1)
        for p in todo:
            run_partition(p, settings)
        return assemble(out, plan.partitions, plan.n_rows, SPEC, {}, {}, dataset), len(todo)


def test_gs_output_is_byte_identical_to_a_local_one_and_a_rerun_writes_nothing(
    make_dataset, tmp_path, faulty_gcs
):
    csv, root, _ = make_dataset(25, extra=["gone.jpg"])
    local, _ = run(csv, root, str(tmp_path / "out"))
    out = faulty_gcs.url("runs/a")
    remote, computed = run(csv, root, out)
    assert computed == 3
    objects = faulty_gcs.objects("runs/a/")
    data = objects["runs/a/images.npy"]
    assert data == (tmp_path / "out" / "images.npy").read_bytes()
    assert local["images_sha256"] == hashlib.sha256(data).hexdigest()
    assert remote["images_crc32c"] == gcs_helpers.crc32c_b64(data), "composed on the bucket"
    assert "images_sha256" not in remote, "no sha256: its bytes never passed through here"
    assert np.load(tmp_path / "out" / "images.npy").shape == (26, 16, 16, 3)
    assert set(remote["files"]) == {"images.npy", "index.parquet", "preview.png"}
    assert all(r["generation"] for r in remote["files"].values())
    assert json.loads(objects["runs/a/run.json"]) == remote
    assert verify_output(out) == remote
    faulty_gcs.proxy.clear()
    again, computed = run(csv, root, out)
    assert computed == 0 and again == remote
    sent = [s.path for s in faulty_gcs.proxy.log if s.method == "POST"]
    assert len(sent) == 1 and sent[0].endswith("ifGenerationMatch=0"), "more than its lock"
    stats = update_run_stats(out)
    assert stats == update_run_stats(str(tmp_path / "out"))


def test_a_replaced_file_is_out_of_step_and_a_damaged_shard_not_done(make_dataset, gcs):
    csv, root, _ = make_dataset(12)
    out = gcs.url("o")
    run(csv, root, out)
    store = open_output(out)
    store.write_bytes("preview.png", b"not the published one")
    with pytest.raises(PermanentError, match="preview.png is out of step with run.json"):
        verify_output(out, hashes=False)
    plan = make_plan(csv, "image_path", open_storage(root), SPEC, 10, out)
    p = plan.partitions[1]
    assert shards.done_record(out, p.id, p.fingerprint) is not None
    name = shards.shard_names(p.id).raw  # on gs:// the pixels are kept headerless
    store.write_bytes(name, store.read_bytes(name))  # same bytes, a new generation
    assert shards.done_record(out, p.id, p.fingerprint) is None
    again, computed = run(csv, root, out)
    assert computed == 1 and verify_output(out) == again


def test_a_commit_record_someone_else_wrote_is_not_overwritten(gcs):
    store = open_output(gcs.url("o"))
    store.write_bytes("shards/part-00000.done.json", b"{}", if_version="0")
    generation = store.stat("shards/part-00000.done.json").version
    store.write_bytes("shards/part-00000.done.json", b"{}", if_version="0")  # ours: same bytes
    store.write_bytes("shards/part-00000.done.json", b'{"a": 1}', if_version=generation)
    with pytest.raises(PermanentError, match="written by someone else meanwhile"):
        store.write_bytes("shards/part-00000.done.json", b'{"b": 2}', if_version=generation)
    assert store.read_json("shards/part-00000.done.json") == {"a": 1}


HOLDER = """
import sys, time
from imgbatch.output.writer_lock import output_lock
with output_lock(sys.argv[1], "flow run fancy-cat"):
    print("locked", flush=True)
    time.sleep(600)
"""


def test_one_writer_a_killed_holders_lease_is_taken_over_after_it_expires(gcs, monkeypatch):
    monkeypatch.setenv(LEASE_ENV, "3")
    out = gcs.url("o")
    env = {**os.environ, "STORAGE_EMULATOR_HOST": gcs.emulator_url}
    proc = subprocess.Popen(
        [sys.executable, "-c", HOLDER, out], stdout=subprocess.PIPE, text=True, env=env
    )
    try:
        assert proc.stdout.readline().strip() == "locked"
        with pytest.raises(OutputBusy) as busy, output_lock(out, "second"):
            pytest.fail("two writers held one gs:// output")
        line = str(busy.value)
        assert line.startswith(f"{out} is being written by pid {proc.pid} on host ")
        assert "(flow run fancy-cat); its lease ends in " in line and "\n" not in line
        assert "a holder that was killed is taken over then" in line
        time.sleep(4)  # renewed meanwhile: still held
        with pytest.raises(OutputBusy), output_lock(out, "second"):
            pass
        proc.kill()
        proc.wait()
        t0 = time.monotonic()
        with output_lock(out, "next run", wait=30) as me:
            waited = time.monotonic() - t0
            assert read_holder(out)["label"] == "next run" and me["pid"] == os.getpid()
        assert 0.5 < waited < 10, waited
        assert read_holder(out) is None, "a released lease leaves no lock object"
    finally:
        proc.kill()
        proc.wait()


def test_a_run_that_lost_its_lease_commits_nothing_more(gcs, monkeypatch):
    monkeypatch.setenv(LEASE_ENV, "1.5")
    out = gcs.url("o")
    store = open_output(out)
    lock = gcs.client().bucket(gcs.name).blob("o/.imgbatch.lock")
    with pytest.raises(LeaseLost, match="another run took over"), output_lock(out, "first"):
        store.write_bytes("a.json", b"{}")
        lock.upload_from_string(b'{"label": "thief"}')  # another run took it over
        time.sleep(1.5)  # the next renewal finds it gone
        with pytest.raises(LeaseLost, match="nothing more committed"):
            store.write_bytes("b.json", b"{}")
    assert store.stat("a.json") is not None and store.stat("b.json") is None
    assert read_holder(out) == {"label": "thief"}, "the thief's lock object was kept"


def test_503_and_429_mid_run_are_retried(make_dataset, tmp_path, faulty_gcs):
    csv, root, _ = make_dataset(25)
    local, _ = run(csv, root, str(tmp_path / "out"))
    faulty_gcs.proxy.set_rules(
        Rule("status:503", method="POST", path=UPLOAD, body=b"part-00000.done.json", times=2),
        Rule("status:429", method="POST", path=UPLOAD, body=b"part-00001.raw", times=1),
        Rule("status:503", method="GET", path="shards", every=5, times=3),
    )
    remote, _ = run(csv, root, faulty_gcs.url("o"))
    assert (
        faulty_gcs.objects("o/images.npy")["o/images.npy"]
        == (tmp_path / "out/images.npy").read_bytes()
    )
    assert [r.injected for r in faulty_gcs.proxy.rules] == [2, 1, 3]
