"""Reconstruction metrics: PSNR for images and Chamfer distance for point clouds (PAPER.md, "Metric protocols")."""

from __future__ import annotations

import numpy as np
import torch


def psnr(prediction: torch.Tensor, target: torch.Tensor, data_range: float = 1.0) -> torch.Tensor:
    """Peak signal-to-noise ratio in dB per instance: the first dimension indexes instances, the rest are averaged.

    Images are on [0, 1] by default; predictions are clamped to the data range first, as a displayed image would be.
    A perfect reconstruction gives +inf.
    """
    if prediction.shape != target.shape:
        raise ValueError(f"prediction {tuple(prediction.shape)} and target {tuple(target.shape)} differ in shape.")
    error = (prediction.clamp(0.0, data_range) - target).pow(2).flatten(1).mean(dim=1)
    return 10.0 * torch.log10(data_range**2 / error)


def chamfer_distance(points_a: np.ndarray | torch.Tensor, points_b: np.ndarray | torch.Tensor) -> float:
    """Mean of squared nearest-neighbour distances from a to b plus the same from b to a.

    This is the convention of the paper's tables (and of HyperDiffusion's code): squared distances, summed over the
    two directions. Both clouds are (P, 3); they may differ in size.
    """
    from scipy.spatial import cKDTree

    a, b = (np.asarray(torch.as_tensor(cloud).detach().cpu(), dtype=np.float64) for cloud in (points_a, points_b))
    for name, cloud in (("points_a", a), ("points_b", b)):
        if cloud.ndim != 2 or cloud.shape[1] != 3 or len(cloud) == 0:
            raise ValueError(f"{name} must be a non-empty (P, 3) point cloud, got shape {cloud.shape}.")
        if not np.isfinite(cloud).all():
            raise ValueError(f"{name} contains NaN or infinite coordinates.")
    a_to_b, _ = cKDTree(b).query(a)
    b_to_a, _ = cKDTree(a).query(b)
    return float(np.mean(a_to_b**2) + np.mean(b_to_a**2))
