"""prepare-dataset: the whole job as one flow run, each stage its own subflow.

download_archives (wget, verified, extracted with tar's layout into WORK/images) ->
upload_tree (optional, gs://) -> preprocess_images (shards, then assembly). Everything is
checked before the first byte is downloaded, and every stage skips what is already done, so
a Retry of a failed run redoes only what did not finish.
"""

import os

from prefect import flow, tags
from prefect.states import Completed, State

from imgbatch.flows.download import download_archives
from imgbatch.flows.naming import named
from imgbatch.flows.preprocess import preprocess_images
from imgbatch.flows.states import fails_cleanly
from imgbatch.flows.upload import upload_tree
from imgbatch.params import PrepareParams
from imgbatch.preflight import check_prepare
from imgbatch.tasks.report import publish_summary

# The tag of every imgbatch run, so the subflows show up under the deployment's filter too.
TAG = "imgbatch"


@flow(name="prepare-dataset", flow_run_name=named("prepare", "out"))
@fails_cleanly
def prepare_dataset(params: PrepareParams) -> State:
    """Download the archives at `urls` into WORK/archives and extract them into WORK/images
    (each member at its own path, as `tar -x` does); optionally copy WORK/images to
    `upload_to` (gs://) and read the images from there; then standardize every image the CSV
    names (its paths relative to WORK/images) into OUT/images.npy with index.parquet,
    run.json and preview.png. Each stage is a subflow run and skips what is already done."""
    params = check_prepare(params)
    with tags(TAG):
        download_archives(params.download())
        images = os.path.join(params.work, "images")
        if params.upload_to:
            upload_tree(params.upload(images))
            images = params.upload_to
        state = preprocess_images(params.preprocess(images), return_state=True)
    if not state.is_completed():
        return state
    run = state.result()
    if run["assembled"]:
        publish_summary(params.out, run["results"], {}, run, state.message)
    return Completed(message=state.message, data=run)
