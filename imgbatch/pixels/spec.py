"""What an output image looks like: the parameters that change pixels."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Literal, get_args

from imgbatch.errors import UsageError

ResizeMode = Literal["stretch", "center_crop", "pad"]
RESIZE_MODES: tuple[str, ...] = get_args(ResizeMode)


@dataclass(frozen=True)
class ImageSpec:
    """Target of standardization; part of every partition fingerprint."""

    size: int = 64
    resize_mode: ResizeMode = "stretch"
    background: tuple[int, int, int] = (255, 255, 255)

    def __post_init__(self) -> None:
        if not isinstance(self.size, int) or isinstance(self.size, bool) or self.size <= 0:
            raise UsageError(f"size must be a positive integer, got {self.size!r}")
        if self.resize_mode not in RESIZE_MODES:
            raise UsageError(
                f"resize_mode must be one of {', '.join(RESIZE_MODES)}, got {self.resize_mode!r}"
            )
        bg = tuple(self.background)
        if len(bg) != 3 or not all(isinstance(c, int) and 0 <= c <= 255 for c in bg):
            raise UsageError(f"background must be three integers 0-255, got {self.background!r}")
        object.__setattr__(self, "background", bg)

    def to_dict(self) -> dict:
        return asdict(self)
