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
