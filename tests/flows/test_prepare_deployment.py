"""prepare-dataset as a served deployment on a real Prefect server: a bad parameter fails before
any download; a run failed by an upload fault, retried with the UI's Retry request, redoes only
what did not finish and ends byte-identical to a clean run."""

from __future__ import annotations

import hashlib
import re
from pathlib import Path

import pytest
from helpers.archives import category_archives
from helpers.deployments import deployment, final_run, press_retry, serving, tail
from helpers.gcs import UPLOAD, Rule
from helpers.http_server import serve

from imgbatch.flows.prepare import prepare_dataset
from imgbatch.params import PrepareParams

pytestmark = [pytest.mark.usefixtures("prefect_server"), pytest.mark.timeout(300)]
DEPLOYMENT = "prepare-dataset/prepare"


def sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def params(server, archives, csv, tmp_path: Path, upload_to: str) -> dict:
    return {
        "urls": [server.url(a.name) for a in archives],
        "sha256": [sha(a) for a in archives],
        "csv": str(csv),
        "work": str(tmp_path / "work"),
        "out": str(tmp_path / "out"),
        "upload_to": upload_to,
        "partition_size": 10,
        "retries": 0,
    }


def start(client, dep, fields: dict):
    """A run of the deployment with these fields; its id."""
    return client.create_flow_run_from_deployment(dep.id, parameters={"params": fields}).id


def check_parent_run(client, run) -> None:
    """The parent run carries the summary with the preview; its subflows say what they did
    and carry the imgbatch tag."""
    from prefect.client.schemas.filters import (
        ArtifactFilter,
        ArtifactFilterFlowRunId,
        FlowRunFilter,
        FlowRunFilterParentFlowRunId,
    )

    arts = client.read_artifacts(
        artifact_filter=ArtifactFilter(flow_run_id=ArtifactFilterFlowRunId(any_=[run.id]))
    )
    summary = [a for a in arts if a.type == "markdown" and "imgbatch preprocess" in a.data]
    assert summary and "data:image/jpeg;base64," in summary[-1].data, [a.key for a in arts]
    subflows = client.read_flow_runs(
        flow_run_filter=FlowRunFilter(
            parent_flow_run_id=FlowRunFilterParentFlowRunId(any_=[run.id])
        )
    )
    names = sorted(re.sub(r" [0-9a-f]{6}$", "", f.name) for f in subflows)
    assert "download 2 archives to work/archives" in names, names
    assert any(n.startswith("upload images to gs://") for n in names), names
    assert "preprocess out" in names, names
    assert all("imgbatch" in f.tags for f in subflows), [(f.name, f.tags) for f in subflows]


def test_prepare_deployment_bad_bucket_then_upload_fault_and_ui_retry(
    tmp_path, faulty_gcs, prefect_server
):
    from prefect import get_client
    from prefect.settings import PREFECT_API_URL

    csv, archives = category_archives(tmp_path / "data", rows=26)
    victim = "images/beauty_image/d3/img_000003"
    with serve() as server, serving(tmp_path) as (proc, log), get_client(sync_client=True) as c:
        for a in archives:
            server.add(a.name, file=a)
        dep = deployment(c, DEPLOYMENT, proc, log)

        bad = params(server, archives, csv, tmp_path, "gs://Bad_Bucket/images")
        run = final_run(c, start(c, dep, bad), proc, log)
        assert run.state.is_failed() and "not a valid bucket name" in run.state.message
        assert server.requests == [], "nothing may be downloaded before the checks pass"

        faulty_gcs.proxy.set_rules(
            Rule("status:403", method="POST", path=UPLOAD, body=victim.encode())
        )
        good = params(server, archives, csv, tmp_path, faulty_gcs.url("images"))
        first = final_run(c, start(c, dep, good), proc, log)
        assert first.state.is_failed(), f"{first.state!r}\n{tail(log)}"
        assert victim in first.state.message, first.state.message
        downloads = len(server.gets(archives[0].name)) + len(server.gets(archives[1].name))
        uploaded = set(faulty_gcs.objects("images/"))
        assert downloads == 2 and not (tmp_path / "out/images.npy").exists()

        faulty_gcs.proxy.clear()
        press_retry(PREFECT_API_URL.value(), first.id)
        second = final_run(c, first.id, proc, log)
        assert second.state.is_completed(), f"{second.state!r}\n{tail(log)}"
        assert second.run_count == 2
        assert second.state.message.startswith("28 rows -> ")
        check_parent_run(c, second)

    again = len(server.gets(archives[0].name)) + len(server.gets(archives[1].name))
    assert again == downloads, "finished downloads are not fetched again"
    posts = [s for s in faulty_gcs.proxy.log if s.method == "POST" and "/upload/" in s.path]
    assert set(faulty_gcs.objects("images/")) - uploaded == {victim + ".jpg"}
    assert len(posts) == 1, "the retry uploads only the object that was missing"

    clean = PrepareParams(**{**good, "out": str(tmp_path / "clean")})
    state = prepare_dataset(clean, return_state=True)
    assert state.is_completed(), state.message
    assert sha(tmp_path / "out/images.npy") == sha(tmp_path / "clean/images.npy")
