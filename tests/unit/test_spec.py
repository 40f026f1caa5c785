"""ImageSpec, and the parameters it is made from: good values pass through, bad ones are
stopped by the model with a line that names the problem."""

from __future__ import annotations

import pytest

from imgbatch.errors import UsageError
from imgbatch.params import PreprocessParams, parse_background
from imgbatch.pixels.spec import RESIZE_MODES, ImageSpec


def test_defaults() -> None:
    spec = ImageSpec()
    assert (spec.size, spec.resize_mode, spec.background) == (64, "stretch", (255, 255, 255))
    assert spec.to_dict() == {"size": 64, "resize_mode": "stretch", "background": (255, 255, 255)}


@pytest.mark.parametrize("mode", RESIZE_MODES)
def test_every_resize_mode_is_accepted(mode: str) -> None:
    assert ImageSpec(size=32, resize_mode=mode).resize_mode == mode


def test_background_list_becomes_a_hashable_tuple() -> None:
    spec = ImageSpec(background=[1, 2, 3])  # type: ignore[arg-type]
    assert spec.background == (1, 2, 3)
    assert hash(spec) == hash(ImageSpec(background=(1, 2, 3)))
    assert spec == ImageSpec(background=(1, 2, 3))


def test_spec_is_frozen() -> None:
    with pytest.raises(AttributeError):
        ImageSpec().size = 32  # type: ignore[misc]


@pytest.mark.parametrize(
    ("values", "message"),
    [
        ({"size": 0}, "--size: Input should be greater than 0"),
        ({"size": 1.5}, "--size: Input should be a valid integer"),
        ({"size": None}, "--size: Input should be a valid integer"),
        ({"resize_mode": "crop"}, "--resize-mode: Input should be 'stretch', 'center_crop' or"),
        ({"resize_mode": None}, "--resize-mode: Input should be 'stretch', 'center_crop' or"),
        ({"background": (256, 0, 0)}, "--background.0: Input should be less than or equal"),
        ({"background": (1, 2)}, "--background.2: Field required"),
        ({"background": "red"}, "background must be three integers 0-255"),
    ],
)
def test_bad_pixel_parameters_stop_at_the_model(values: dict, message: str) -> None:
    """The one check of what ImageSpec holds: the parameter model, with one line."""
    with pytest.raises(UsageError) as err:
        PreprocessParams.checked(csv="a.csv", images="i", out="o", **values)
    assert str(err.value).startswith(message), str(err.value)


def test_the_model_gives_the_spec() -> None:
    params = PreprocessParams(csv="a.csv", images="i", out="o", size=32, background="1,2,3")
    assert params.spec() == ImageSpec(32, "stretch", (1, 2, 3))


@pytest.mark.parametrize(
    ("text", "want"),
    [("255,255,255", (255, 255, 255)), ("0,0,0", (0, 0, 0)), (" 10, 20 ,30 ", (10, 20, 30))],
)
def test_parse_background(text: str, want: tuple[int, int, int]) -> None:
    assert parse_background(text) == want
    assert ImageSpec(background=parse_background(text)).background == want


@pytest.mark.parametrize("text", ["", "white", "#ffffff", "1,2,x", "1.5,2,3", "1;2;3"])
def test_parse_background_not_numbers(text: str) -> None:
    with pytest.raises(
        UsageError, match=r"background must be three integers 0-255 like 255,255,255"
    ) as err:
        parse_background(text)
    assert repr(text) in str(err.value)


@pytest.mark.parametrize("text", ["1,2", "1,2,3,4", "256,0,0", "-1,0,0", "0,0,1000"])
def test_parse_background_out_of_range_or_count(text: str) -> None:
    with pytest.raises(UsageError, match=r"background must be three integers 0-255") as err:
        parse_background(text)
    assert repr(text) in str(err.value)
