"""Scale-out: the same flow on a Dask cluster (prefect-dask) gives the same bytes."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest

from flows.preprocess import preprocess_images
from imgbatch.params import PreprocessParams

distributed = pytest.importorskip("distributed")
prefect_dask = pytest.importorskip("prefect_dask")


def sha(path) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


@pytest.mark.usefixtures("prefect_server")
def test_dask_cluster_output_equals_local_threads(make_dataset, tmp_path):
    csv, root, _ = make_dataset(30, extra=["missing.jpg"])
    params = dict(csv=csv, images=root, partition_size=8, workers=1)
    local = preprocess_images(
        PreprocessParams(out=str(tmp_path / "local"), **params), return_state=True
    )
    assert local.is_completed(), local.message
    with distributed.LocalCluster(
        n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None
    ) as cluster:
        runner = prefect_dask.DaskTaskRunner(address=cluster.scheduler_address)
        state = preprocess_images.with_options(task_runner=runner)(
            PreprocessParams(out=str(tmp_path / "dask"), **params), return_state=True
        )
    assert state.is_completed(), state.message
    assert state.result()["counts"] == {"ok": 30, "missing": 1}
    assert sha(tmp_path / "dask/images.npy") == sha(tmp_path / "local/images.npy")
    assert sha(tmp_path / "dask/index.parquet") == sha(tmp_path / "local/index.parquet")
