"""images.npy composed on the bucket (imgbatch.outstore.compose) against a real fake-gcs-server:
byte-identical to a local run through a two-level compose tree with no pixel read back, a
part replaced while it is composed refused (nothing published, the shard recomputed), the
streamed fallback when the bucket refuses compose, and the crc32c combination it is checked by.

The emulator ignores compose's per-source ifGenerationMatch (measured; real GCS answers 412),
so a replaced part reaches the result and only the crc32c check can refuse it: that is the
check tested here.
"""

from __future__ import annotations

import hashlib
import os
import random
import threading
import time

import helpers.gcs as gcs_helpers
import pytest
from helpers.gcs import MEDIA, Rule, crc32c_b64

from imgbatch.compute.partition import PartitionSettings, run_partition
from imgbatch.output import shards
from imgbatch.output.assemble import DamagedShard, assemble
from imgbatch.output.ownership import claim_output, dataset_identity
from imgbatch.output.stats import update_run_stats
from imgbatch.output.verify import verify_output
from imgbatch.outstore import crc32c
from imgbatch.pixels.spec import ImageSpec
from imgbatch.plan.run_plan import make_plan
from imgbatch.storage.base import open_storage

gcs_emulator = gcs_helpers.gcs_emulator
faulty_gcs = gcs_helpers.faulty_gcs

SPEC = ImageSpec(size=16)
COMPOSE = r"/compose(\?|$)"


def test_crc32c_of_a_concatenation_from_its_parts_matches_google_crc32c():
    rng = random.Random(23)
    for _ in range(200):
        data = os.urandom(rng.randrange(0, 4000))
        cuts = sorted(rng.randrange(0, len(data) + 1) for _ in range(rng.randrange(0, 6)))
        pieces = [data[a:b] for a, b in zip([0, *cuts], [*cuts, len(data)], strict=True)]
        parts = [(crc32c_b64(p), len(p)) for p in pieces]
        assert crc32c.combine_all(parts) == crc32c_b64(data), cuts
    big = os.urandom(1 << 20)  # lengths of many bits: the shift by x^(8n) goes through them all
    assert crc32c.combine_all([(crc32c_b64(big[:3]), 3), (crc32c_b64(big[3:]), len(big) - 3)]) == (
        crc32c_b64(big)
    )


def compute(csv: str, root: str, out: str, size: int):
    """Plan and compute every partition not done (in this process); the plan and dataset."""
    dataset = dataset_identity(csv, "image_path", root, SPEC)
    with claim_output(out, dataset, "test"):
        plan = make_plan(csv, "image_path", open_storage(root), SPEC, size, out)
        todo, _ = shards.split_done(out, plan.partitions)
        settings = PartitionSettings(plan.plan_file, root, out, SPEC, "threads", 1)
        for p in todo:
            run_partition(p, settings)
    return plan, dataset


def publish(out: str, plan, dataset) -> dict:
    with claim_output(out, dataset, "test"):
        return assemble(out, plan.partitions, plan.n_rows, SPEC, {}, {}, dataset)


def run(csv: str, root: str, out: str, size: int) -> dict:
    return publish(out, *compute(csv, root, out, size))


def raw_reads(proxy) -> int:
    return proxy.count("GET", MEDIA + r".*\.raw")


def test_composed_through_a_tree_is_the_local_array_and_no_pixel_comes_back(
    make_dataset, tmp_path, faulty_gcs
):
    csv, root, _ = make_dataset(69, extra=["gone.jpg"], min_side=16, max_side=40)
    local = run(csv, root, str(tmp_path / "out"), 2)
    out = faulty_gcs.url("o")
    plan, dataset = compute(csv, root, out, 2)
    assert len(plan.partitions) == 35, "the header and 35 parts: more than 32 sources"
    proxy = faulty_gcs.proxy
    proxy.clear()
    remote = publish(out, plan, dataset)
    assert proxy.count("POST", COMPOSE, "200") == 3, "two groups of at most 32, then the top"
    assert raw_reads(proxy) == 0, "a shard's pixels came back through this machine"
    objects = faulty_gcs.objects("o/")
    data = objects["o/images.npy"]
    assert data == (tmp_path / "out/images.npy").read_bytes()
    assert remote["images_crc32c"] == crc32c_b64(data) and "images_sha256" not in remote
    assert remote["files"]["images.npy"]["crc32c"] == remote["images_crc32c"]
    assert not [n for n in objects if "/.compose/" in n], "temporary objects left"
    assert objects["o/index.parquet"] == (tmp_path / "out/index.parquet").read_bytes()
    assert objects["o/preview.png"] == (tmp_path / "out/preview.png").read_bytes()
    assert verify_output(out) == remote
    assert update_run_stats(out) == update_run_stats(str(tmp_path / "out"))
    assert local["counts"] == remote["counts"]


def test_a_part_replaced_while_composed_is_refused_and_its_partition_recomputed(
    make_dataset, tmp_path, faulty_gcs
):
    csv, root, _ = make_dataset(25, min_side=16, max_side=40)
    out = faulty_gcs.url("o")
    plan, dataset = compute(csv, root, out, 10)
    proxy, bucket = faulty_gcs.proxy, faulty_gcs.client().bucket(faulty_gcs.name)
    victim = bucket.blob("o/" + shards.shard_names(1).raw)
    size = len(victim.download_as_bytes())
    proxy.set_rules(Rule("delay:1", method="POST", path=COMPOSE, times=1))

    def replace_while_held() -> None:  # someone writes a part between its record and compose
        while not proxy.count("POST", COMPOSE, "delay"):
            time.sleep(0.01)
        victim.upload_from_string(b"\x7f" * size)

    thread = threading.Thread(target=replace_while_held)
    thread.start()
    with pytest.raises(DamagedShard, match="partition 1 is damaged") as refused:
        publish(out, plan, dataset)
    thread.join()
    assert "crc32c" in str(refused.value.__cause__) and refused.value.partition == 1
    names = set(faulty_gcs.objects("o/"))
    assert not names & {"o/images.npy", "o/run.json"}, "published although refused"
    assert not [n for n in names if "/.compose/" in n], "temporary objects left"
    assert "o/shards/part-00001.done.json" not in names, "the changed part still counts as done"
    assert "o/shards/part-00000.done.json" in names

    local = run(csv, root, str(tmp_path / "out"), 10)
    again = run(csv, root, out, 10)
    data = faulty_gcs.objects("o/images.npy")["o/images.npy"]
    assert data == (tmp_path / "out/images.npy").read_bytes() and again["counts"] == local["counts"]


def test_a_bucket_that_refuses_compose_gets_the_array_streamed(make_dataset, tmp_path, faulty_gcs):
    csv, root, _ = make_dataset(25, min_side=16, max_side=40)
    run(csv, root, str(tmp_path / "out"), 10)
    out = faulty_gcs.url("o")
    plan, dataset = compute(csv, root, out, 10)
    proxy = faulty_gcs.proxy
    proxy.clear()
    proxy.set_rules(Rule("status:400:compose is not supported here", method="POST", path=COMPOSE))
    remote = publish(out, plan, dataset)
    assert proxy.count("POST", COMPOSE, "status:400") == 1, "compose was not tried, or retried"
    assert raw_reads(proxy) == len(plan.partitions), "each part read once, to stream it"
    data = faulty_gcs.objects("o/images.npy")["o/images.npy"]
    assert data == (tmp_path / "out/images.npy").read_bytes()
    assert remote["images_sha256"] == hashlib.sha256(data).hexdigest()
    assert remote["images_crc32c"] == crc32c_b64(data)
    assert not [n for n in faulty_gcs.objects("o/") if "/.compose/" in n]
    assert verify_output(out) == remote
