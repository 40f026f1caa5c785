"""Exact per-channel mean/std of images.npy, and a standardized float32 copy, in one
streaming pass each: memory stays at one block whatever N is.

Sums are exact int64 (numpy's float32 `.mean()` on a large uint8 array drifts badly), the
kernels are parallel numba loops compiled once and cached on disk (`cache=True`).
Only `ok` rows count: failed rows are zero-filled and would bias the statistics, and in the
float32 copy they stay all zeros, as in images.npy, so they remain recognisable (a failed
row normalized like the others would become a plausible-looking -mean/std image).
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import BinaryIO

import numba
import numpy as np

from imgbatch.errors import UsageError
from imgbatch.layout import IMAGES, INDEX, NORMALIZED, RUN
from imgbatch.output.verify import npy_header
from imgbatch.outstore.base import OutputStore, json_bytes, open_output

BLOCK_ROWS = 4096


@numba.njit(parallel=True, cache=True)
def channel_sums(block: np.ndarray, keep: np.ndarray) -> np.ndarray:
    """int64 [[sum_c], [sum_c^2]] over the kept rows of a (n, S, S, 3) uint8 block."""
    n = block.shape[0]
    parts = np.zeros((n, 2, 3), dtype=np.int64)
    for i in numba.prange(n):
        if keep[i]:
            for y in range(block.shape[1]):
                for x in range(block.shape[2]):
                    for c in range(3):
                        v = np.int64(block[i, y, x, c])
                        parts[i, 0, c] += v
                        parts[i, 1, c] += v * v
    return parts.sum(axis=0)


@numba.njit(parallel=True, cache=True)
def standardize_block(
    block: np.ndarray, keep: np.ndarray, mean: np.ndarray, inv_std: np.ndarray
) -> np.ndarray:
    """(x - mean) / std per channel, as float32, fused in one pass; rows not kept stay 0."""
    out = np.zeros(block.shape, dtype=np.float32)
    for i in numba.prange(block.shape[0]):
        if not keep[i]:
            continue
        for y in range(block.shape[1]):
            for x in range(block.shape[2]):
                for c in range(3):
                    out[i, y, x, c] = (np.float32(block[i, y, x, c]) - mean[c]) * inv_std[c]
    return out


@dataclass(frozen=True)
class ChannelStats:
    count: int  # pixels per channel that were counted
    sums: tuple[int, int, int]
    sums_sq: tuple[int, int, int]

    @property
    def mean(self) -> list[float]:
        return [s / self.count for s in self.sums]

    @property
    def std(self) -> list[float]:
        """Population std from exact integers: (n*sum_sq - sum^2) / n^2, no cancellation."""
        n = self.count
        return [
            ((n * q - s * s) / (n * n)) ** 0.5 for s, q in zip(self.sums, self.sums_sq, strict=True)
        ]

    def to_dict(self) -> dict:
        return {
            "pixels_per_channel": self.count,
            "mean": self.mean,
            "std": self.std,
            "scale": "0-255",
            "rows": "ok only",
            "failed_rows_normalized": "all zeros",
        }


def _shape(f: BinaryIO, where: str) -> tuple[int, ...]:
    """The (N, S, S, 3) shape of the uint8 .npy `f` is open on, left at its data."""
    shape, fortran, dtype, _ = npy_header(f)
    if dtype != np.uint8 or fortran or len(shape) != 4 or shape[3] != 3:
        raise UsageError(f"{where} is not a uint8 (N, S, S, 3) array")
    return shape


def _blocks(store: OutputStore) -> Iterator[tuple[int, np.ndarray]]:
    """Yield (start_row, uint8 block) of images.npy, read into one reused buffer."""
    path = store.where(IMAGES)
    with store.open_read(IMAGES) as f:
        shape = _shape(f, path)
        n, row = shape[0], int(np.prod(shape[1:]))
        buf = np.empty((min(BLOCK_ROWS, max(n, 1)),) + tuple(shape[1:]), dtype=np.uint8)
        for start in range(0, n, BLOCK_ROWS):
            k = min(BLOCK_ROWS, n - start)
            view = buf[:k]
            if f.readinto(memoryview(view).cast("B")) != k * row:
                raise UsageError(f"{path} is shorter than its header says")
            yield start, view


def _ok_mask(store: OutputStore) -> np.ndarray:
    status = store.read_parquet(INDEX, columns=["status"]).column("status")
    return np.asarray(status.to_numpy(zero_copy_only=False) == "ok")


def channel_stats(out: str) -> ChannelStats:
    """Exact statistics of the ok rows of OUT/images.npy."""
    store = open_output(out)
    if store.stat(IMAGES) is None:
        raise UsageError(f"{store.where(IMAGES)} does not exist: run preprocess first")
    ok = _ok_mask(store)
    total = np.zeros((2, 3), dtype=np.int64)
    pixels = 0
    for start, block in _blocks(store):
        keep = ok[start : start + len(block)]
        total += channel_sums(block, keep)
        pixels += int(keep.sum()) * block.shape[1] * block.shape[2]
    if pixels == 0:
        raise UsageError(f"{out} has no ok rows to compute statistics from")
    return ChannelStats(pixels, tuple(map(int, total[0])), tuple(map(int, total[1])))


def write_normalized(out: str, stats: ChannelStats) -> str:
    """OUT/images_f32.npy: (x - mean) / std per channel, float32, same shape and rows; rows
    that failed stay all zeros."""
    store = open_output(out)
    ok = _ok_mask(store)
    mean = np.asarray(stats.mean, dtype=np.float32)
    inv_std = np.asarray([1.0 / s if s > 0 else 0.0 for s in stats.std], dtype=np.float32)
    with store.open_read(IMAGES) as src:
        shape = _shape(src, store.where(IMAGES))
    with store.writing(NORMALIZED) as tmp, open(tmp, "wb") as f:
        np.lib.format.write_array_header_2_0(
            f, {"descr": "<f4", "fortran_order": False, "shape": shape}
        )
        for start, block in _blocks(store):
            f.write(standardize_block(block, ok[start : start + len(block)], mean, inv_std))
    return store.where(NORMALIZED)


def update_run_stats(out: str, normalize: bool = False) -> dict:
    """Compute the statistics, record them in run.json, optionally write images_f32.npy."""
    store = open_output(out)
    run = store.read_json(RUN)
    if run is None:
        raise UsageError(f"{out} has no run.json: run preprocess first")
    stats = channel_stats(out)
    run["stats"] = stats.to_dict()
    if normalize:
        write_normalized(out, stats)
        run["stats"]["normalized"] = NORMALIZED
    before = store.stat(RUN)
    store.write_bytes(RUN, json_bytes(run), if_version=before.version if before else "0")
    return run["stats"]
