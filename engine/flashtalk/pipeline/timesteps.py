"""The distilled sampler's timesteps: a fixed grid, shifted towards high noise."""
from __future__ import annotations

import numpy as np

NUM_TRAIN_TIMESTEPS = 1000


def shift_timestep(t: float, shift: float) -> float:
    """t' = s*t / (1 + (s-1)*t) on t in [0, 1], scaled back to [0, 1000], in float32 as the reference."""
    x = np.float32(t) / np.float32(NUM_TRAIN_TIMESTEPS)
    shifted = np.float32(shift) * x / (np.float32(1) + np.float32(shift - 1) * x)
    return float(shifted * np.float32(NUM_TRAIN_TIMESTEPS))


def sampling_timesteps(steps: int, shift: float) -> list[float]:
    """steps+1 values ending in 0; 4 steps at shift 5 -> [1000, 937.5, 833.33, 625, 0]."""
    if steps == 2:
        grid = [1000.0, 500.0]
    elif steps == 4:
        grid = [1000.0, 750.0, 500.0, 250.0]
    else:  # the reference's linspace(1000, 1, steps) in float32
        grid = [NUM_TRAIN_TIMESTEPS - i * (NUM_TRAIN_TIMESTEPS - 1) / max(steps - 1, 1) for i in range(steps)]
    return [shift_timestep(t, shift) for t in grid] + [0.0]
