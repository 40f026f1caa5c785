"""ImageSpec and parse_background: good values pass through, bad ones name the problem."""

from __future__ import annotations

import pytest

from imgbatch.errors import UsageError
from imgbatch.params import parse_background
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


@pytest.mark.parametrize("size", [0, -1, 1.5, "64", None])
def test_bad_size(size: object) -> None:
    with pytest.raises(UsageError, match=r"size must be a positive integer") as err:
        ImageSpec(size=size)  # type: ignore[arg-type]
    assert repr(size) in str(err.value)


@pytest.mark.parametrize("mode", ["crop", "", "STRETCH", "center-crop", None])
def test_bad_resize_mode(mode: object) -> None:
    with pytest.raises(UsageError, match=r"resize_mode must be one of") as err:
        ImageSpec(resize_mode=mode)  # type: ignore[arg-type]
    msg = str(err.value)
    assert repr(mode) in msg
    assert all(m in msg for m in RESIZE_MODES)


@pytest.mark.parametrize(
    "bg", [(256, 0, 0), (-1, 0, 0), (1, 2), (1, 2, 3, 4), (1.5, 2, 3), ("1", "2", "3"), "red"]
)
def test_bad_background(bg: object) -> None:
    with pytest.raises(UsageError, match=r"background must be three integers 0-255") as err:
        ImageSpec(background=bg)  # type: ignore[arg-type]
    assert repr(bg) in str(err.value)


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
