"""Exact channel statistics and the normalized copy, against int64/float64 numpy references."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from imgbatch.atomic_files import write_json
from imgbatch.errors import UsageError
from imgbatch.output import stats


def make_out(tmp_path, images: np.ndarray, status: list[str]):
    out = tmp_path / "out"
    out.mkdir()
    np.save(out / "images.npy", images)
    pd.DataFrame({"row": range(len(status)), "status": status}).to_parquet(out / "index.parquet")
    write_json(str(out / "run.json"), {"rows": len(status)})
    return out


def reference(images: np.ndarray, ok: np.ndarray):
    px = images[ok].reshape(-1, 3).astype(np.float64)
    return px.mean(axis=0), px.std(axis=0)


def test_stats_are_exact_and_skip_failed_rows(tmp_path, monkeypatch):
    monkeypatch.setattr(stats, "BLOCK_ROWS", 7)  # several blocks, a ragged last one
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, size=(30, 8, 8, 3), dtype=np.uint8)
    status = ["ok"] * 30
    for i in (3, 17, 29):
        images[i] = 0
        status[i] = "corrupt"
    out = make_out(tmp_path, images, status)
    s = stats.channel_stats(str(out))
    ok = np.array([x == "ok" for x in status])
    mean, std = reference(images, ok)
    assert s.count == 27 * 64
    assert s.sums == tuple(int(v) for v in images[ok].reshape(-1, 3).sum(0, dtype=np.int64))
    np.testing.assert_allclose(s.mean, mean, rtol=1e-12)
    np.testing.assert_allclose(s.std, std, rtol=1e-9)


def test_large_uniform_array_where_float32_mean_drifts(tmp_path):
    images = np.full((2600, 64, 64, 3), 201, dtype=np.uint8)  # 32M values per channel
    out = make_out(tmp_path, images, ["ok"] * len(images))
    s = stats.channel_stats(str(out))
    assert s.mean == [201.0, 201.0, 201.0] and s.std == [0.0, 0.0, 0.0]
    naive = images.reshape(-1, 3).mean(axis=0, dtype=np.float32)
    assert abs(float(naive[0]) - 201.0) > 1.0, "float32 per-channel mean drifts (why int64)"


def test_normalized_copy_matches_the_formula_and_run_json_records_stats(tmp_path):
    rng = np.random.default_rng(1)
    images = rng.integers(0, 256, size=(12, 4, 4, 3), dtype=np.uint8)
    out = make_out(tmp_path, images, ["ok"] * 12)
    recorded = stats.update_run_stats(str(out), normalize=True)
    f32 = np.load(out / "images_f32.npy")
    mean, std = reference(images, np.ones(12, bool))
    assert f32.shape == images.shape and f32.dtype == np.float32
    np.testing.assert_allclose(f32, (images - mean) / std, rtol=1e-5, atol=1e-5)
    run = pd.read_json(out / "run.json", typ="series")
    assert run["stats"]["mean"] == pytest.approx(list(mean))
    assert recorded["normalized"] == "images_f32.npy"


def test_failed_rows_stay_all_zeros_in_the_normalized_copy(tmp_path, monkeypatch):
    """A zero-filled failed row would otherwise become -mean/std: a plausible-looking image."""
    monkeypatch.setattr(stats, "BLOCK_ROWS", 4)  # failed rows in several blocks
    rng = np.random.default_rng(2)
    images = rng.integers(1, 256, size=(10, 4, 4, 3), dtype=np.uint8)
    status = ["ok"] * 10
    for i in (0, 5, 9):
        images[i] = 0
        status[i] = ["corrupt", "missing", "rejected"][i % 3]
    out = make_out(tmp_path, images, status)
    stats.update_run_stats(str(out), normalize=True)
    f32 = np.load(out / "images_f32.npy")
    ok = np.array([x == "ok" for x in status])
    mean, std = reference(images, ok)
    assert not f32[~ok].any(), "failed rows must stay all zeros"
    np.testing.assert_allclose(f32[ok], (images[ok] - mean) / std, rtol=1e-5, atol=1e-5)
    assert all(f32[i].any() for i in np.flatnonzero(ok)), "an ok row came out all zeros"


def test_missing_output_is_a_usage_error(tmp_path):
    with pytest.raises(UsageError, match="run preprocess first"):
        stats.update_run_stats(str(tmp_path))
    out = make_out(tmp_path, np.zeros((2, 4, 4, 3), np.uint8), ["corrupt", "missing"])
    with pytest.raises(UsageError, match="no ok rows"):
        stats.channel_stats(str(out))
