"""Distances between a generated and a reference set of feature vectors: Fréchet distance and unbiased squared MMD.

The paper reports three for FFHQ generation (Yang et al., arXiv 2512.01759, "Generation"): the Fréchet distance
(FD) between Gaussians fitted to both sets, and the maximum mean discrepancy with a Gaussian kernel (MMD-G) and with
a polynomial kernel (MMD-P, the kernel of KID). `image_generation_metrics` computes all three on image features
(`features.py`).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch

from .features import ImageFeatureExtractor, image_features


def _feature_sets(
    features_a: np.ndarray | torch.Tensor, features_b: np.ndarray | torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """Both sets as float64 CPU tensors, checked to be (N, D) with N >= 2, the same D and finite values."""
    sets = []
    for name, features in (("features_a", features_a), ("features_b", features_b)):
        tensor = torch.as_tensor(features).detach().to("cpu", torch.float64)
        if tensor.ndim != 2 or len(tensor) < 2 or tensor.shape[1] == 0:
            raise ValueError(
                f"{name} must be an (N, D) set of at least 2 feature vectors of D >= 1, got shape "
                f"{tuple(tensor.shape)}; flatten single features to (N, D) and compare sets, not single samples."
            )
        if not torch.isfinite(tensor).all():
            raise ValueError(f"{name} contains NaN or infinite values.")
        sets.append(tensor)
    a, b = sets
    if a.shape[1] != b.shape[1]:
        raise ValueError(
            f"features_a has {a.shape[1]} dimensions and features_b {b.shape[1]}; extract both with the same extractor."
        )
    return a, b


def frechet_distance(features_a: np.ndarray | torch.Tensor, features_b: np.ndarray | torch.Tensor) -> float:
    """||mu_a - mu_b||² + Tr(S_a + S_b - 2 (S_a S_b)^(1/2)) for (N, D) feature sets, in float64 (FID's formula).

    Means and sample covariances (as pytorch-fid computes them); the sets may differ in size. The trace of the matrix
    square root is computed exactly and without a general matrix square root (scipy's `sqrtm` takes minutes at
    D = 3,072, and goes complex on the singular covariances of sets smaller than D): the eigenvalues of S_a S_b are
    those of the symmetric S_a^(1/2) S_b S_a^(1/2) (used when D is at most the set sizes), and also the squared
    singular values of A B^T with S_a = A^T A, S_b = B^T B the centred sets (used when a set has fewer vectors than
    dimensions, where the covariances are singular and the estimate is biased upwards, as FID is on few images).
    """
    a, b = _feature_sets(features_a, features_b)
    centred_a = (a - a.mean(dim=0)) / math.sqrt(len(a) - 1)
    centred_b = (b - b.mean(dim=0)) / math.sqrt(len(b) - 1)
    mean_term = float((a.mean(dim=0) - b.mean(dim=0)).pow(2).sum())
    traces = float(centred_a.pow(2).sum() + centred_b.pow(2).sum())
    if a.shape[1] <= min(len(a), len(b)):
        cov_a, cov_b = centred_a.T @ centred_a, centred_b.T @ centred_b
        values, vectors = torch.linalg.eigh(cov_a)
        root_a = (vectors * values.clamp_min(0.0).sqrt()) @ vectors.T
        root_trace = torch.linalg.eigvalsh(root_a @ cov_b @ root_a).clamp_min(0.0).sqrt().sum()
    else:
        root_trace = torch.linalg.svdvals(centred_a @ centred_b.T).sum()
    return mean_term + traces - 2.0 * float(root_trace)


def _median_pairwise_distance(
    distances_aa: torch.Tensor, distances_bb: torch.Tensor, distances_ab: torch.Tensor
) -> float:
    """Median distance over all pairs of distinct vectors of the pooled set, from its three blocks of distances."""
    pairs = [
        distances[torch.ones_like(distances, dtype=torch.bool).triu(diagonal=1)]
        for distances in (distances_aa, distances_bb)
    ]
    return float(np.median(torch.cat([*pairs, distances_ab.flatten()]).numpy()))


def mmd(
    features_a: np.ndarray | torch.Tensor,
    features_b: np.ndarray | torch.Tensor,
    kernel: str = "gaussian",
    bandwidth: float | None = None,
    degree: int = 3,
    gamma: float | None = None,
    coef0: float = 1.0,
) -> float:
    """Unbiased estimate of the squared MMD between (N, D) feature sets (a U-statistic; the sets may differ in size).

    The within-set kernel means leave out each vector's kernel with itself, which makes the estimate unbiased: it
    averages to 0 over samples of one distribution and can come out slightly negative. Kernels:
    "gaussian", exp(-||x - y||² / (2 bandwidth²)), with the bandwidth defaulting to the median distance between
    distinct vectors of the pooled set (the median heuristic); "polynomial", (gamma <x, y> + coef0)^degree, with gamma
    defaulting to 1 / D, which with degree 3 and coef0 1 is KID's kernel.
    """
    a, b = _feature_sets(features_a, features_b)
    pairs = ((a, a), (b, b), (a, b))
    if kernel == "gaussian":
        distances = [torch.cdist(x, y) for x, y in pairs]
        if bandwidth is None:
            bandwidth = _median_pairwise_distance(*distances)
            if bandwidth == 0:
                raise ValueError("the median distance between vectors is 0 (mostly duplicates); pass a bandwidth.")
        if not bandwidth > 0:
            raise ValueError(f"bandwidth must be positive, got {bandwidth}.")
        kernel_aa, kernel_bb, kernel_ab = (torch.exp(-(d**2) / (2.0 * bandwidth**2)) for d in distances)
    elif kernel == "polynomial":
        gamma = 1.0 / a.shape[1] if gamma is None else gamma
        kernel_aa, kernel_bb, kernel_ab = ((gamma * x @ y.T + coef0) ** degree for x, y in pairs)
    else:
        raise ValueError(f"kernel must be 'gaussian' or 'polynomial', got {kernel!r}.")
    m, n = len(a), len(b)
    within_a = (kernel_aa.sum() - kernel_aa.diagonal().sum()) / (m * (m - 1))
    within_b = (kernel_bb.sum() - kernel_bb.diagonal().sum()) / (n * (n - 1))
    return float(within_a + within_b - 2.0 * kernel_ab.mean())


def image_generation_metrics(
    generated: torch.Tensor, reference: torch.Tensor, extractor: ImageFeatureExtractor | None = None
) -> dict[str, float]:
    """FD, MMD-G and MMD-P between generated and reference (N, H, W, 3) images on [0, 1], on the same features.

    `extractor` defaults to `PixelFeatures()` (see `features.py` for why); the two sets may differ in size and, as
    long as the extractor resizes (both built-in ones do), in image size. Returns {"fd", "mmd_gaussian",
    "mmd_polynomial"} with the default kernel parameters of `mmd`.
    """
    features_generated = image_features(generated, extractor)
    features_reference = image_features(reference, extractor)
    return {
        "fd": frechet_distance(features_generated, features_reference),
        "mmd_gaussian": mmd(features_generated, features_reference, kernel="gaussian"),
        "mmd_polynomial": mmd(features_generated, features_reference, kernel="polynomial"),
    }


def image_generation_figures(
    generated: torch.Tensor,
    reference: torch.Tensor,
    extractor: ImageFeatureExtractor | None = None,
    learned_features: ImageFeatureExtractor | None = None,
    labels: Sequence[int] | None = None,
) -> dict[str, Any]:
    """Everything the 2-D generation study measures of generated images against the reference (training) images.

    `image_generation_metrics` on `extractor`'s features (pixels by default) at the top level, the same on
    `learned_features` under "learned_features" (left out when None; typically a `LearnedImageFeatures` of the
    references), and `image_memorization` under "memorization" (both sets at one image size). With `labels`, the
    class each generated image was drawn for: "class_agreement" and "class_agreement_without_copies"
    (`class_agreement` over all samples and over those `image_copies` does not flag) as read by `learned_features`
    when it is a classifier, None otherwise (no classifier to read them); samples flatter than every reference
    image (`flat_images`) count as not read as their class.
    """
    from .memorization import image_memorization

    figures: dict[str, Any] = image_generation_metrics(generated, reference, extractor=extractor)
    if learned_features is not None:
        figures["learned_features"] = image_generation_metrics(generated, reference, extractor=learned_features)
    figures["memorization"] = image_memorization(generated, reference)
    if labels is not None:
        figures.update(_class_agreements(generated, reference, learned_features, labels))
    return figures


def _class_agreements(
    generated: torch.Tensor, reference: torch.Tensor, classifier: Any, labels: Sequence[int]
) -> dict[str, dict[str, Any] | None]:
    from .conditional import class_agreement, flat_images
    from .memorization import image_copies

    if getattr(classifier, "kind", None) != "classifier":
        return {"class_agreement": None, "class_agreement_without_copies": None}
    predicted = classifier.predict_classes(generated)
    # a class the generator knows but the references never showed (a declared class without images) is one the
    # classifier cannot name: its samples count as not read as their class, rather than failing the measurement
    num_classes = max(classifier.config["num_classes"], max(labels, default=-1) + 1)
    copies = image_copies(generated, reference)
    flat = flat_images(generated, reference)
    return {
        "class_agreement": class_agreement(predicted, labels, num_classes, unreadable=flat),
        "class_agreement_without_copies": class_agreement(
            predicted, labels, num_classes, exclude=copies, unreadable=flat
        ),
    }
