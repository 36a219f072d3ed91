"""The progressive schedule and every random draw of a step, as pure functions of (seed, step).

Nothing here keeps state between steps: which stage a step belongs to, which instances it trains on and the
random numbers it uses are recomputed from the global step. So a run resumed from a checkpoint at step k draws
exactly what an uninterrupted run draws from step k on, on any number of processes, without saving data-loader
or RNG state.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
import torch

from .config import StageConfig


def stage_at(stages: Sequence[StageConfig], step: int) -> tuple[int, int]:
    """(stage index, step within that stage) of global step `step` (0-based)."""
    start = 0
    for index, stage in enumerate(stages):
        if step < start + stage.steps:
            return index, step - start
        start += stage.steps
    raise ValueError(f"step {step} is past the end of the schedule ({start} steps)")


def lr_factor(step: int, total_steps: int, kind: str, min_ratio: float) -> float:
    """Multiplier of the base learning rates at `step`: 1 ("constant"), or a half cosine from 1 to `min_ratio`."""
    if kind == "constant":
        return 1.0
    progress = min(step / max(total_steps - 1, 1), 1.0)
    return min_ratio + (1.0 - min_ratio) * 0.5 * (1.0 + math.cos(math.pi * progress))


def _seed(*values: int) -> int:
    # SeedSequence mixes the values into a well-spread 64-bit seed: nearby (seed, step) pairs get unrelated streams.
    return int(np.random.SeedSequence([*values]).generate_state(2, dtype=np.uint32).view(np.uint64)[0] >> 1)


def step_generator(seed: int, step: int) -> torch.Generator:
    """The CPU generator of step `step`: the reparameterisation noise and point subsets are drawn from it."""
    return torch.Generator(device="cpu").manual_seed(_seed(seed, step, 0x5E9))


def batch_instances(num_instances: int, batch_size: int, seed: int, stage: int, step_in_stage: int) -> torch.Tensor:
    """Instance indices (batch_size,) of a step: consecutive slices of a stream of shuffled epochs.

    Each stage walks its own stream (epoch e of stage s is the permutation seeded by (seed, s, e)), so every
    instance is seen once per epoch and the order never depends on earlier stages' batch sizes.
    """
    if not 0 < batch_size <= num_instances:
        raise ValueError(f"batch_size must be in [1, {num_instances}], got {batch_size}")
    start = step_in_stage * batch_size
    first_epoch, last_epoch = start // num_instances, (start + batch_size - 1) // num_instances
    epochs = [
        torch.randperm(num_instances, generator=torch.Generator().manual_seed(_seed(seed, stage, epoch, 0xE90C)))
        for epoch in range(first_epoch, last_epoch + 1)
    ]
    offset = start - first_epoch * num_instances
    return torch.cat(epochs)[offset : offset + batch_size]


__all__ = ["batch_instances", "lr_factor", "stage_at", "step_generator"]
