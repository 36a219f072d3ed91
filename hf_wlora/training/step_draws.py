"""Every draw of a training step, and the learning rate, as pure functions of (seed, step).

Nothing here keeps state between steps: which instances a step trains on, the random numbers it uses and its
learning rate are recomputed from the global step. So a run resumed from a checkpoint at step k draws exactly what
an uninterrupted run draws from step k on, on any number of processes, without saving data-loader, RNG or
scheduler state. Stage 1 (the field) and stage 3 (the diffusion transformer) both train this way.
"""

from __future__ import annotations

import math

import numpy as np
import torch


def lr_factor(step: int, total_steps: int, kind: str, min_ratio: float, warmup_steps: int = 0) -> float:
    """Multiplier of the base learning rates at `step`: a linear warm-up over `warmup_steps` steps, then 1
    ("constant") or a half cosine from 1 down to `min_ratio` over the remaining steps ("cosine")."""
    if step < warmup_steps:
        return (step + 1) / warmup_steps
    if kind == "constant":
        return 1.0
    progress = min((step - warmup_steps) / max(total_steps - warmup_steps - 1, 1), 1.0)
    return min_ratio + (1.0 - min_ratio) * 0.5 * (1.0 + math.cos(math.pi * progress))


def mix_seed(*values: int) -> int:
    # SeedSequence mixes the values into a well-spread 64-bit seed: nearby (seed, step) pairs get unrelated streams.
    return int(np.random.SeedSequence([*values]).generate_state(2, dtype=np.uint32).view(np.uint64)[0] >> 1)


def step_generator(seed: int, step: int) -> torch.Generator:
    """The CPU generator of step `step`: every random draw of the step (noise, point subsets, timesteps) uses it."""
    return torch.Generator(device="cpu").manual_seed(mix_seed(seed, step, 0x5E9))


def batch_instances(num_instances: int, batch_size: int, seed: int, stage: int, step_in_stage: int) -> torch.Tensor:
    """Instance indices (batch_size,) of a step: consecutive slices of a stream of shuffled epochs.

    Each stage walks its own stream (epoch e of stage s is the permutation seeded by (seed, s, e)), so every
    instance is seen once per epoch and the order never depends on earlier stages' batch sizes. A run without
    stages uses stage 0.
    """
    if not 0 < batch_size <= num_instances:
        raise ValueError(f"batch_size must be in [1, {num_instances}], got {batch_size}")
    start = step_in_stage * batch_size
    first_epoch, last_epoch = start // num_instances, (start + batch_size - 1) // num_instances
    epochs = [
        torch.randperm(num_instances, generator=torch.Generator().manual_seed(mix_seed(seed, stage, epoch, 0xE90C)))
        for epoch in range(first_epoch, last_epoch + 1)
    ]
    offset = start - first_epoch * num_instances
    return torch.cat(epochs)[offset : offset + batch_size]


__all__ = ["batch_instances", "lr_factor", "mix_seed", "step_generator"]
