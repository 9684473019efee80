"""Region of interest, in reference-image pixel coordinates."""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class Roi:
    x: int
    y: int
    width: int
    height: int

    def __post_init__(self) -> None:
        if self.width <= 0 or self.height <= 0 or self.x < 0 or self.y < 0:
            raise ValueError(f"invalid ROI {self}: needs x, y >= 0 and width, height > 0")

    @classmethod
    def full(cls, shape: tuple[int, ...]) -> Roi:
        return cls(0, 0, int(shape[1]), int(shape[0]))

    def fits(self, shape: tuple[int, ...]) -> bool:
        return self.x + self.width <= shape[1] and self.y + self.height <= shape[0]

    def slice(self, image: np.ndarray) -> np.ndarray:
        """A view of ``image`` inside the ROI."""
        return image[self.y : self.y + self.height, self.x : self.x + self.width]

    def as_list(self) -> list[int]:
        return [self.x, self.y, self.width, self.height]
