"""Batched per-instance fitting: N instances' factors trained together, each exactly as if it were alone.

The factors of N instances are stacked (N, ...) leaf tensors with one Adam optimiser over them, and the loss is
the sum of per-instance losses. Adam is element-wise, so every instance receives exactly the updates it would get if
fitted alone; the point subset of each step depends only on (seed, step), not on which instances share the batch.
Hence fitting in batches of any size gives the same weights as fitting one instance at a time, up to the float
rounding of the batched matmuls, whose kernels may vary with the batch size (tested to 1e-6).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import torch
from tqdm.auto import tqdm

from ..checks import check_int
from .kinds import LossFn, Representation

# SDF values beyond this distance are clamped in the loss, as in DeepSDF: only the near-surface band matters.
SDF_CLAMP = 0.1
# Learning-rate schedules of a fit (`FitSettings.lr_schedule`).
LR_SCHEDULES = ("constant", "cosine")


def image_loss(outputs: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """Per-instance mean squared error of RGB values."""
    return (outputs - targets).pow(2).flatten(1).mean(dim=1)


def sdf_loss(outputs: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """Per-instance mean absolute error of SDF values clamped to [-SDF_CLAMP, SDF_CLAMP]."""
    clamped = outputs.clamp(-SDF_CLAMP, SDF_CLAMP) - targets.clamp(-SDF_CLAMP, SDF_CLAMP)
    return clamped.abs().flatten(1).mean(dim=1)


def loss_for(modality: str) -> LossFn:
    """The fitting loss of a modality: MSE for images, clamped L1 for shapes."""
    if modality == "image":
        return image_loss
    if modality == "shape":
        return sdf_loss
    raise ValueError(f"Unknown modality {modality!r}; expected 'image' or 'shape'.")


@dataclass
class FitSettings:
    """How instances are fitted.

    Args:
        steps: Optimiser steps per instance.
        learning_rate: Adam's learning rate.
        points_per_step: Points drawn per step (the same positions for every instance of a step); None uses all.
        chunk_size: Instances per vectorised chunk (None: chosen from the activation size).
        seed: Seed of the per-step point subsets.
        lr_schedule: "constant", or "cosine" (the learning rate decays from `learning_rate` to zero over the steps).
        weight_decay: Decoupled decay towards the fit's starting factors (AdamW's form, anchored at the start
            instead of at zero): after every Adam step each factor moves by learning rate x weight_decay x (factor -
            start). 0 (the default) is plain Adam.
    """

    steps: int = 300
    learning_rate: float = 1e-2
    points_per_step: int | None = None
    chunk_size: int | None = None
    seed: int = 0
    lr_schedule: str = "constant"
    weight_decay: float = 0.0

    def __post_init__(self) -> None:
        if self.steps < 1:
            raise ValueError(f"steps must be >= 1, got {self.steps}.")
        if not self.learning_rate > 0:
            raise ValueError(f"learning_rate must be > 0, got {self.learning_rate}.")
        if self.points_per_step is not None and self.points_per_step < 1:
            raise ValueError(f"points_per_step must be >= 1 or None, got {self.points_per_step}.")
        if self.lr_schedule not in LR_SCHEDULES:
            raise ValueError(f"lr_schedule must be one of {LR_SCHEDULES}, got {self.lr_schedule!r}.")
        if not self.weight_decay >= 0:
            raise ValueError(f"weight_decay must be >= 0, got {self.weight_decay}.")

    @classmethod
    def from_encoding(cls, encoding: Mapping[str, Any], **overrides: Any) -> FitSettings:
        """The fit an encoding ran (`EncodeConfig.result_settings()`, as a weight data set's info and a trained
        transformer's config record it); `overrides` whose value is not None replace its steps, learning_rate or
        points_per_step. The seed, the learning-rate schedule and the weight decay are always the encoding's: the seed
        fixes the initial factors and the point subsets."""
        unknown = sorted(set(overrides) - {"steps", "learning_rate", "points_per_step"})
        if unknown:
            raise ValueError(f"Only steps, learning_rate and points_per_step can be overridden, got {unknown}.")
        settings = {
            "steps": encoding.get("steps", cls.steps),
            "learning_rate": encoding.get("learning_rate", cls.learning_rate),
            "points_per_step": encoding.get("points_per_step"),
            "seed": encoding.get("seed", cls.seed),
            "lr_schedule": encoding.get("lr_schedule", cls.lr_schedule),
            "weight_decay": encoding.get("weight_decay", cls.weight_decay),
        }
        return cls(**{**settings, **{key: value for key, value in overrides.items() if value is not None}})


@dataclass
class FitResult:
    """Fitted factors (N, ...) keyed by spec name, and each instance's final training loss."""

    factors: dict[str, torch.Tensor]
    losses: torch.Tensor


def step_points(num_points: int, settings: FitSettings, step: int) -> torch.Tensor | None:
    """The point indices of one step (the same for every instance), or None for all points."""
    if settings.points_per_step is None or settings.points_per_step >= num_points:
        return None
    generator = torch.Generator().manual_seed(settings.seed * 1_000_003 + step)
    return torch.randperm(num_points, generator=generator)[: settings.points_per_step]


def fit_instances(
    representation: Representation,
    coords: torch.Tensor,
    targets: torch.Tensor,
    settings: FitSettings,
    initial: Mapping[str, torch.Tensor] | None = None,
    progress: bool = False,
) -> FitResult:
    """Fit N instances at once from the same initial factors, on the representation's device (see
    `Representation.to`); the fitted factors and losses are returned on the CPU.

    Args:
        representation: What is fitted (see `make_representation`).
        coords: (N, P, d) coordinates per instance, or (P, d) shared by all (images on one pixel grid).
        targets: (N, P, C) target values.
        settings: Steps, learning rate, point subsets.
        initial: Starting factors of one instance (default: `representation.initial_factors()`).
        progress: Show a progress bar over the steps.
    """
    if targets.dim() != 3:
        raise ValueError(f"targets must be (N, P, C), got shape {tuple(targets.shape)}.")
    if not torch.isfinite(targets).all():
        raise ValueError("targets contain NaN or infinite values; clean the data before encoding.")
    num_instances, num_points = targets.shape[:2]
    if num_instances == 0 or num_points == 0:
        raise ValueError(f"targets {tuple(targets.shape)} hold no instances or no points; there is nothing to fit.")
    device = representation.device
    coords, targets = coords.to(device), targets.to(device)
    if coords.dim() == 2:
        coords = coords.expand(num_instances, *coords.shape)
    if coords.shape[:2] != (num_instances, num_points):
        raise ValueError(f"coords {tuple(coords.shape)} do not match targets {tuple(targets.shape)}.")
    start = representation.initial_factors() if initial is None else initial
    factors = {
        name: value.detach().to(device).expand(num_instances, *value.shape).clone().requires_grad_(True)
        for name, value in start.items()
    }
    anchors = {name: value.detach().clone() for name, value in factors.items()} if settings.weight_decay else {}
    optimizer = torch.optim.Adam(factors.values(), lr=settings.learning_rate)
    schedule = (
        torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, settings.steps)
        if settings.lr_schedule == "cosine"
        else None
    )
    loss_fn = loss_for(representation.modality)
    losses = torch.empty(num_instances)
    for step in tqdm(range(settings.steps), desc=f"fitting {representation.name}", disable=not progress):
        points = step_points(num_points, settings, step)
        points = None if points is None else points.to(device)
        step_coords = coords if points is None else _subset(coords, points)
        step_targets = targets if points is None else targets[:, points]
        optimizer.zero_grad(set_to_none=False)
        losses = representation.loss_backward(factors, step_coords, step_targets, loss_fn, settings.chunk_size)
        optimizer.step()
        if settings.weight_decay:
            _decay_towards(factors, anchors, optimizer.param_groups[0]["lr"] * settings.weight_decay)
        if schedule is not None:
            schedule.step()
    return FitResult({name: value.detach().cpu() for name, value in factors.items()}, losses.cpu())


def _subset(values: torch.Tensor, points: torch.Tensor) -> torch.Tensor:
    """values[:, points]; values expanded over the instances (one grid shared by all) stay expanded, which the field's
    Fourier features encode once (`FourierFeatures.forward`)."""
    if values.stride(0) == 0:
        return values[0, points].expand(values.shape[0], -1, -1)
    return values[:, points]


@torch.no_grad()
def _decay_towards(factors: Mapping[str, torch.Tensor], anchors: Mapping[str, torch.Tensor], rate: float) -> None:
    """factor <- factor - rate * (factor - anchor), in place (element-wise, so every instance decays as if alone)."""
    for name, factor in factors.items():
        factor.lerp_(anchors[name], rate)


def fit_in_batches(
    representation: Representation,
    coords: torch.Tensor,
    targets: torch.Tensor,
    settings: FitSettings,
    batch_size: int = 64,
    initial: Mapping[str, torch.Tensor] | None = None,
    progress: bool = False,
) -> dict[str, torch.Tensor]:
    """`fit_instances` over consecutive batches of `batch_size` instances; returns all factors (N, ...) by spec name.

    The batch size changes speed and memory, never the result: every instance gets exactly the fit it would get
    alone. `coords` are (P, d) shared by all instances, or (N, P, d).
    """
    check_int(batch_size, "batch_size", minimum=1)
    pieces: list[dict[str, torch.Tensor]] = []
    batches = range(0, targets.shape[0], batch_size)
    for first in tqdm(batches, desc=f"encoding {representation.name}", disable=not progress):
        batch = slice(first, first + batch_size)
        batch_coords = coords if coords.dim() == 2 else coords[batch]
        pieces.append(fit_instances(representation, batch_coords, targets[batch], settings, initial=initial).factors)
    return {name: torch.cat([piece[name] for piece in pieces]) for name in pieces[0]}
