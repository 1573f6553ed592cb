"""FlashTalk's quality ladder: the session's own size and steps at the top, then fewer steps, then
smaller sizes, then the fewest steps at the smallest size.

448x768/4 (the default) -> 448x768/3 -> 448x768/2 -> 400x672/2 -> 336x576/2 -> 288x480/2 ->
224x384/2 -> 224x384/1. Smaller sizes keep the top's aspect ratio as closely as the model's
16-pixel grid (VAE stride 8 x patch 2) allows, down to about half its width and height. What a chunk
costs splits into a part per denoising step (the DiT) and a fixed part (audio features, VAE
decode and encode, colour correction), so one measured chunk at a size predicts every step
count at that size.

A compiled pipeline (--compile) keeps one size: a new size means new graphs (minutes each, and
today's inductor fails to lower the VAE's convolutions once it turns their sizes dynamic), while
a step count changes no shape. Its ladder goes from the steps asked for down to 1 at that size.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

from engine.flashtalk.pipeline.settings import PATCH, VAE_STRIDE

GRID = VAE_STRIDE[1] * PATCH[1]  # sizes are multiples of this (16)
SIZE_SCALES = (1.0, 0.875, 0.75, 0.625, 0.5)  # of the top's width and height
MIN_SIDE = 2 * GRID  # no size below 32 pixels on a side
FEWEST_STEPS_AT_TOP = 2  # the top size steps down to this before the size does
DIT_STEP_STAGE = "dit_step_"  # the streaming pipeline's per-step stage names: dit_step_0, dit_step_1, ...


@dataclass(frozen=True)
class Rung:
    width: int
    height: int
    steps: int

    @property
    def name(self) -> str:
        return f"{self.width}x{self.height}/{self.steps}"


def ladder_sizes(width: int, height: int) -> list[tuple[int, int]]:
    """(width, height) per size, largest first; the first is the top itself."""
    sizes = [(width, height)]
    aspect = math.log(width / height)
    for scale in SIZE_SCALES[1:]:
        candidates = [(w, h) for w in _grid_neighbours(width * scale) for h in _grid_neighbours(height * scale)
                      if min(w, h) >= MIN_SIDE and w * h < sizes[-1][0] * sizes[-1][1]]
        if candidates:
            area = width * height * scale * scale
            sizes.append(min(candidates, key=lambda s: (round(abs(math.log(s[0] / s[1]) - aspect), 6),
                                                        abs(s[0] * s[1] - area))))
    return sizes


def _grid_neighbours(value: float) -> set[int]:
    return {GRID * math.floor(value / GRID), GRID * math.ceil(value / GRID)}


def ladder(width: int, height: int, steps: int, one_size: bool = False) -> list[Rung]:
    """The whole ladder, most work first; `one_size`: steps only (a compiled pipeline)."""
    if one_size:
        return [Rung(width, height, s) for s in range(steps, 0, -1)]
    sizes = ladder_sizes(width, height)
    floor = min(steps, FEWEST_STEPS_AT_TOP)
    rungs = [Rung(width, height, s) for s in range(steps, floor - 1, -1)]
    rungs += [Rung(w, h, floor) for w, h in sizes[1:]]
    if floor > 1:
        rungs.append(Rung(*sizes[-1], 1))
    return rungs


@dataclass(frozen=True)
class ChunkCost:
    """Seconds per chunk at one size: fixed + steps x per_step."""

    fixed_s: float
    per_step_s: float

    @classmethod
    def from_timings(cls, wall_s: float, timings_ms: dict[str, float]) -> ChunkCost:
        """From one timed chunk: its wall time and its per-stage milliseconds."""
        steps = [ms for stage, ms in timings_ms.items() if stage.startswith(DIT_STEP_STAGE)]
        if not steps:
            raise ValueError("a chunk's timings have no denoising steps to split the cost by")
        per_step = sum(steps) / len(steps) / 1e3
        return cls(max(wall_s - per_step * len(steps), 0.0), per_step)

    def seconds(self, steps: int) -> float:
        return self.fixed_s + steps * self.per_step_s
