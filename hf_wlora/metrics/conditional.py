"""Class agreement of class-conditional samples: does a classifier read each sample as the class it was drawn for?

Set-level distances (FD, MMD) say whether the samples as a whole look like the data, not whether the sample drawn
for class c shows a c. Here a classifier trained on the reference set (`LearnedImageFeatures.predict_classes`)
reads every sample, and the agreement is the fraction read as its conditioning class: over all samples, per class,
and the lowest class (the one a picture of the samples is likeliest to miss). Samples that copy a training
instance (`image_copies`) can be left out with `exclude`, so that agreement bought by memorisation does not count.
The classifier's own errors bound what this can show: check it on held-out references first.

A classifier has no class for "nothing": the glyph classifier reads most uniform images as a 3 (23 of 40 uniform
colours; benchmarks/RESULTS.md). Samples marked `unreadable` (for images, `flat_images`: less contrast than any
reference image has) therefore count as not read as their class, whatever the classifier says.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch

from .features import check_images


def class_agreement(
    predicted: torch.Tensor | Sequence[int],
    labels: torch.Tensor | Sequence[int],
    num_classes: int,
    exclude: torch.Tensor | None = None,
    unreadable: torch.Tensor | None = None,
) -> dict[str, Any]:
    """How often the predicted class of each sample is the class it was drawn for.

    Args:
        predicted: (S,) the classifier's class of each sample.
        labels: (S,) the class each sample was generated for, in [0, num_classes).
        num_classes: The number of classes.
        exclude: (S,) bool, True for samples to leave out (e.g. copies of training instances); None keeps all.
        unreadable: (S,) bool, True for samples that show no class (e.g. `flat_images`): kept, but never counted as
            read as their class. None: none is.

    Returns:
        "accuracy" (over the samples kept), "per_class" (one fraction per class, None for a class with no sample
        kept), "lowest_class" and "lowest" (the class with the lowest fraction among those with samples, and that
        fraction; None when no sample is kept), "samples" (how many were kept) and "unreadable" (how many of those
        were marked unreadable).
    """
    predicted, labels = torch.as_tensor(predicted).long(), torch.as_tensor(labels).long()
    if predicted.ndim != 1 or predicted.shape != labels.shape:
        raise ValueError(
            f"predicted {tuple(predicted.shape)} and labels {tuple(labels.shape)} must be (S,) tensors of one length."
        )
    if not (isinstance(num_classes, int) and num_classes >= 1):
        raise ValueError(f"num_classes must be a positive int, got {num_classes!r}.")
    for name, values in (("predicted", predicted), ("labels", labels)):
        if len(values) and not (int(values.min()) >= 0 and int(values.max()) < num_classes):
            raise ValueError(f"{name} must hold class ids in [0, {num_classes}), got {values.min()}..{values.max()}.")
    kept = ~_sample_mask("exclude", exclude, labels)
    readable = ~_sample_mask("unreadable", unreadable, labels)
    correct = (predicted == labels) & kept & readable
    per_class: list[float | None] = []
    for c in range(num_classes):
        count = int((kept & (labels == c)).sum())
        per_class.append(int((correct & (labels == c)).sum()) / count if count else None)
    measured = {c: value for c, value in enumerate(per_class) if value is not None}
    lowest_class = min(measured, key=measured.__getitem__) if measured else None
    total = int(kept.sum())
    return {
        "accuracy": int(correct.sum()) / total if total else None,
        "per_class": per_class,
        "lowest_class": lowest_class,
        "lowest": None if lowest_class is None else measured[lowest_class],
        "samples": total,
        "unreadable": int((kept & ~readable).sum()),
    }


def flat_images(images: torch.Tensor, reference: torch.Tensor) -> torch.Tensor:
    """(S,) bool: which of `images` (S, H, W, 3) have less contrast (the standard deviation of all their values) than
    the least contrasted of `reference` (R, H', W', 3), the images a classifier was trained on: a sample flatter than
    every real image shows no class, and `class_agreement` should not count what a classifier reads into it."""
    check_images(images)
    check_images(reference, "reference")
    least = reference.flatten(1).std(dim=1, unbiased=False).min()
    return images.flatten(1).std(dim=1, unbiased=False) < least


def _sample_mask(name: str, mask: torch.Tensor | None, labels: torch.Tensor) -> torch.Tensor:
    """A per-sample bool mask checked against the labels' shape (all False when None)."""
    if mask is None:
        return torch.zeros_like(labels, dtype=torch.bool)
    mask = torch.as_tensor(mask)
    if mask.dtype != torch.bool or mask.shape != labels.shape:
        raise ValueError(
            f"{name} must be a bool tensor of shape {tuple(labels.shape)}, got {mask.dtype} {tuple(mask.shape)}."
        )
    return mask
