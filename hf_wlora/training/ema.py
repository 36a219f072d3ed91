"""Exponential moving average of a model's weights: the copy that is evaluated and exported.

Averaging the last few hundred steps smooths out the noise of small-batch Adam updates, so the exported model (the
base field of stage 1, the diffusion transformer of stage 3) is better and more stable than the last iterate (the
StyleGAN / diffusion-model practice).
"""

from __future__ import annotations

import copy

import torch
from torch import nn


class ModelEMA:
    """An EMA copy of a module, with the usual warm-up: decay_t = min(decay, (1 + t) / (10 + t)).

    The warm-up keeps short runs meaningful: early on the average follows the fast-changing weights closely
    instead of remembering the random init for ~1 / (1 - decay) steps. Buffers (e.g. a field's Fourier frequencies)
    are copied.
    Checkpoints save its module as safetensors and `num_updates` in the file's metadata (`training.checkpoints`).
    """

    def __init__(self, module: nn.Module, decay: float) -> None:
        if not 0 <= decay < 1:
            raise ValueError(f"decay must be in [0, 1), got {decay}")
        self.module = copy.deepcopy(module).eval().requires_grad_(False)
        self.decay = decay
        self.num_updates = 0

    def current_decay(self) -> float:
        return min(self.decay, (1 + self.num_updates) / (10 + self.num_updates))

    @torch.no_grad()
    def update(self, module: nn.Module) -> None:
        """Move the average towards `module`'s current weights (call once per optimiser step)."""
        weight = 1.0 - self.current_decay()
        averaged = list(self.module.parameters())
        current = [p.detach() for p in module.parameters()]
        torch._foreach_lerp_(averaged, current, weight)
        for target, source in zip(self.module.buffers(), module.buffers(), strict=True):
            target.copy_(source)
        self.num_updates += 1


__all__ = ["ModelEMA"]
