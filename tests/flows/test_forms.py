"""The run form the Prefect UI builds for every deployed flow: a description per field, dropdowns
for choices, and the same fields as the CLI's options (one parameter model for both)."""

from __future__ import annotations

import importlib

import pytest

from imgbatch.cli.main import build_parser
from imgbatch.deployments.serve import FLOWS


def flow_schema(module: str, attr: str) -> dict:
    flow = getattr(importlib.import_module(module), attr)
    return flow.parameters.model_dump(by_alias=True)


@pytest.mark.parametrize(("module", "attr", "name"), FLOWS)
def test_every_form_field_has_a_description(module, attr, name):
    schema = flow_schema(module, attr)
    assert set(schema["properties"]) == {"params"}, "every parameter is a field of the model"
    ref = schema["properties"]["params"]["$ref"]
    model = schema["definitions"][ref.rsplit("/", 1)[-1]]
    assert model["properties"], name
    undocumented = [k for k, v in model["properties"].items() if not v.get("description")]
    assert not undocumented, f"{name}: fields without a description: {undocumented}"


def test_choice_fields_are_dropdowns():
    schema = flow_schema("imgbatch.flows.preprocess", "preprocess_images")
    fields = schema["definitions"]["PreprocessParams"]["properties"]
    assert fields["resize_mode"]["enum"] == ["stretch", "center_crop", "pad"]
    assert fields["executor"]["enum"] == ["auto", "threads", "processes"]
    assert fields["size"]["default"] == 64 and fields["size"]["exclusiveMinimum"] == 0


@pytest.mark.parametrize(
    ("command", "model"),
    [
        ("preprocess", "PreprocessParams"),
        ("download", "DownloadParams"),
        ("upload", "UploadParams"),
        ("prepare", "PrepareParams"),
    ],
)
def test_cli_options_are_the_model_fields(command, model):
    import imgbatch.params

    sub = next(a for a in build_parser()._actions if a.dest == "command")
    options = {a.dest for a in sub.choices[command]._actions} - {"help"}
    assert options == set(getattr(imgbatch.params, model).model_fields)


def test_prepare_form_starts_with_the_paths_a_user_fills_in():
    schema = flow_schema("imgbatch.flows.prepare", "prepare_dataset")
    fields = list(schema["definitions"]["PrepareParams"]["properties"])
    assert fields[:5] == ["urls", "csv", "work", "out", "upload_to"], fields


def test_every_prepare_field_reaches_a_stage():
    """A value set in prepare-dataset's form changes what a stage runs with (none is ignored)."""
    from imgbatch.params import PrepareParams

    base = {"urls": ["http://h/a.tar.gz"], "csv": "c.csv", "work": "w", "out": "o"}
    changed = {
        "sha256": ["0" * 64],
        "tries": 2,
        "read_timeout": 7.0,
        "waitretry": 3.0,
        "parallel": 2,
        "column": "path",
        "size": 32,
        "resize_mode": "pad",
        "background": (1, 2, 3),
        "partition_size": 7,
        "partitions": [1],
        "workers": 3,
        "executor": "threads",
        "retries": 5,
        "retry_delay_seconds": 4.0,
        "min_found": 0.1,
        "overwrite": True,
        "dask_address": "tcp://h:8786",
        "upload_to": "gs://b/p",
    }
    assert set(base) | set(changed) == set(PrepareParams.model_fields)
    params = PrepareParams(**base, **changed)
    stages = [params.download(), params.preprocess("images"), params.upload("w/images")]
    dumps = [s.model_dump() for s in stages] + [{"upload_to": params.upload("w/images").dest}]
    ignored = [k for k, v in changed.items() if all(d.get(k) != v for d in dumps)]
    assert not ignored, f"prepare-dataset fields no stage uses: {ignored}"


def test_deployment_descriptions_are_the_whole_docstring():
    from imgbatch.deployments.serve import build_deployments

    for d in build_deployments():
        flow = getattr(
            importlib.import_module(d.entrypoint.rsplit(".", 1)[0]), d.entrypoint.rsplit(".", 1)[1]
        )
        assert d.description == flow.description and d.description.rstrip().endswith("."), d.name
