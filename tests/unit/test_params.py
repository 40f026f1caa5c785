"""One parameter model per flow: every setting a run takes is a field, checked once."""

from __future__ import annotations

import pytest

from imgbatch.errors import UsageError
from imgbatch.params import PrepareParams, PreprocessParams, UploadParams
from imgbatch.preflight import check_dask
from imgbatch.storage.gcs_client import RetryPolicy


def test_upload_retry_fields_default_to_the_client_policy():
    params = UploadParams(src_dir="d", dest="gs://b/p")
    assert RetryPolicy(**params.object_retry()) == RetryPolicy()
    fast = UploadParams(src_dir="d", dest="gs://b/p", object_attempts=2, object_timeout=5)
    assert RetryPolicy(**fast.object_retry()) == RetryPolicy(attempts=2, timeout=5)


def test_the_dask_address_reaches_the_preprocess_stage_of_prepare():
    prepare = PrepareParams(
        urls=["http://127.0.0.1/a.tgz"], csv="a.csv", out="o", work="w", dask_address="tcp://h:1"
    )
    assert prepare.preprocess("w/images").dask_address == "tcp://h:1"
    assert PreprocessParams(csv="a.csv", images="i", out="o").dask_address is None


def test_a_dask_address_without_prefect_dask_is_one_line(monkeypatch):
    import importlib.util

    check_dask(None)
    monkeypatch.setattr(importlib.util, "find_spec", lambda name: None)
    with pytest.raises(UsageError, match=r"--dask-address needs prefect-dask: pip install"):
        check_dask("tcp://127.0.0.1:8786")
