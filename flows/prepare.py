"""prepare-dataset: the whole job as one flow run, each stage its own subflow.

download_archives (wget, verified, extracted with tar's layout into WORK/images) ->
upload_tree (optional, gs://) -> preprocess_images (shards, then assembly). Everything is
checked before the first byte is downloaded, and every stage skips what is already done, so
a Retry of a failed run redoes only what did not finish.
"""

import os

from prefect import flow
from prefect.states import Completed, State

from imgbatch.flows.download import download_archives
from imgbatch.flows.naming import named
from imgbatch.flows.preprocess import preprocess_images
from imgbatch.flows.states import fails_cleanly
from imgbatch.flows.upload import upload_tree
from imgbatch.params import PrepareParams, UploadParams
from imgbatch.preflight import check_prepare


@flow(name="prepare-dataset", flow_run_name=named("prepare", "out"))
@fails_cleanly
def prepare_dataset(params: PrepareParams) -> State:
    """Archives at `urls` + the CSV -> OUT/images.npy; the CSV's paths are relative to
    WORK/images, where the archives' members land at their own paths (as tar -x does)."""
    params = check_prepare(params)
    download_archives(params.download())
    images = os.path.join(params.work, "images")
    if params.upload_to:
        upload_tree(UploadParams(src_dir=images, dest=params.upload_to, retries=params.retries))
        images = params.upload_to
    state = preprocess_images(params.preprocess(images), return_state=True)
    if not state.is_completed():
        return state
    return Completed(message=state.message, data=state.result())
