"""Memorisation: the fraction of generated samples that copy a training instance.

A generator can score well on set-level distances (FD, MMD, COV) by reproducing its training set. The check here
compares each sample's distance to its nearest training instance j with j's own distance to its nearest *other*
training instance: a sample closer to j than `ratio` times that distance is counted as a copy of j. The threshold
adapts to how crowded the training set is around j, so the same ratio means the same thing on sparse and dense
data. A fresh draw from the training distribution sits about as far from its nearest training instance as training
instances sit from each other (ratio about 1), and a copy at distance about 0; the default ratio 0.5 counts a
sample as a copy when it is at least twice as close to a training instance as any other training instance is.
"""

from __future__ import annotations

import math

import torch

from .reconstruction import check_value_range, psnr_from_mse

DEFAULT_COPY_RATIO = 0.5


def copy_mask(
    sample_to_training: torch.Tensor, training_to_training: torch.Tensor, ratio: float = DEFAULT_COPY_RATIO
) -> torch.Tensor:
    """Which samples copy a training instance (S,) bool, from the (S, T) and (T, T) distance matrices.

    Sample s copies its nearest training instance j when d(s, j) < ratio * min_{k != j} d(j, k); the diagonal of
    `training_to_training` is ignored. A training instance with an exact duplicate in the training set (nearest
    distance 0) can be copied by no sample, so deduplicate the training set first if it has duplicates.
    """
    cross = torch.as_tensor(sample_to_training, dtype=torch.float64)
    within = torch.as_tensor(training_to_training, dtype=torch.float64).clone()
    if cross.ndim != 2 or within.ndim != 2 or within.shape != (cross.shape[1], cross.shape[1]):
        raise ValueError(
            f"sample_to_training must be (S, T) and training_to_training (T, T) with the same T, got "
            f"{tuple(cross.shape)} and {tuple(within.shape)}."
        )
    if cross.shape[0] == 0 or cross.shape[1] < 2:
        raise ValueError(
            f"need at least one sample and two training instances, got {cross.shape[0]} and {cross.shape[1]}."
        )
    if not (torch.isfinite(cross).all() and torch.isfinite(within).all()):
        raise ValueError("the distance matrices contain NaN or infinite values.")
    if not (isinstance(ratio, (int, float)) and math.isfinite(ratio) and ratio > 0):
        raise ValueError(f"ratio must be a positive number, got {ratio!r}.")
    within.fill_diagonal_(math.inf)
    nearest_distance, nearest = cross.min(dim=1)
    return nearest_distance < ratio * within.min(dim=1).values[nearest]


def copy_fraction(
    sample_to_training: torch.Tensor, training_to_training: torch.Tensor, ratio: float = DEFAULT_COPY_RATIO
) -> float:
    """The fraction of samples that copy a training instance (`copy_mask`'s mean)."""
    return float(copy_mask(sample_to_training, training_to_training, ratio).double().mean())


def image_memorization(
    samples: torch.Tensor, training: torch.Tensor, ratio: float = DEFAULT_COPY_RATIO
) -> dict[str, float | int]:
    """Memorisation of generated images against the training images, both (N, H, W, C) on [0, 1] at one size.

    Distances are Euclidean over pixels (a copy is a copy pixel for pixel; learned features are built to map
    different instances of a class close together). Returns:
    - "copy_fraction": `copy_fraction` of the samples;
    - "nearest_training_psnr_mean": the mean PSNR of each sample against its nearest training image (high: close to
      some training image);
    - "distinct_nearest_training_instances": how many training images are the nearest of some sample (low: the
      samples collapse onto a few).
    """
    cross, within = _image_distances(samples, training)
    pixels = samples[0].numel()
    nearest_mse = cross.min(dim=1).values.pow(2) / pixels
    return {
        "copy_fraction": copy_fraction(cross, within, ratio),
        "nearest_training_psnr_mean": float(psnr_from_mse(nearest_mse.clamp_min(1e-10)).mean()),
        "distinct_nearest_training_instances": int(cross.argmin(dim=1).unique().numel()),
    }


def image_copies(samples: torch.Tensor, training: torch.Tensor, ratio: float = DEFAULT_COPY_RATIO) -> torch.Tensor:
    """Which generated images copy a training image (S,) bool (`copy_mask` on pixel distances), both (N, H, W, C)
    on [0, 1] at one size: e.g. to measure something over the samples that are not copies."""
    return copy_mask(*_image_distances(samples, training), ratio)


def _image_distances(samples: torch.Tensor, training: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """The (S, T) sample-to-training and (T, T) training-to-training pixel distances, float64."""
    for name, images in (("samples", samples), ("training", training)):
        if not isinstance(images, torch.Tensor) or images.ndim != 4 or len(images) == 0:
            shape = tuple(images.shape) if isinstance(images, torch.Tensor) else type(images).__name__
            raise ValueError(f"{name} must be a non-empty (N, H, W, C) image tensor, got {shape}.")
        check_value_range(images, name)
    if samples.shape[1:] != training.shape[1:]:
        raise ValueError(
            f"samples {tuple(samples.shape[1:])} and training images {tuple(training.shape[1:])} differ in size; "
            "decode the samples at the training images' resolution."
        )
    flat_samples, flat_training = samples.flatten(1).double(), training.flatten(1).double()
    return torch.cdist(flat_samples, flat_training), torch.cdist(flat_training, flat_training)
