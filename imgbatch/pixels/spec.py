"""What an output image looks like: the parameters that change pixels."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Literal, get_args

ResizeMode = Literal["stretch", "center_crop", "pad"]
RESIZE_MODES: tuple[str, ...] = get_args(ResizeMode)


@dataclass(frozen=True)
class ImageSpec:
    """Target of standardization; part of every partition fingerprint. Built from the
    checked parameters (imgbatch.params.ImageOptions.spec), so it checks nothing itself."""

    size: int = 64
    resize_mode: ResizeMode = "stretch"
    background: tuple[int, int, int] = (255, 255, 255)

    def __post_init__(self) -> None:
        # Values were checked once, by imgbatch.params; a list (JSON) becomes a hashable tuple.
        object.__setattr__(self, "background", tuple(self.background))

    def to_dict(self) -> dict:
        return asdict(self)
