"""Reconstruction metrics: PSNR for images and Chamfer distance for point clouds (the paper's protocols)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import torch


def check_value_range(values: torch.Tensor, name: str, data_range: float = 1.0) -> None:
    """Refuse a tensor that is not floating point with finite values on [0, data_range], naming it and the fix.

    Images on [0, 255] or [-1, 1] would otherwise give distances, features and PSNRs on another scale, silently.
    """
    if not values.is_floating_point():
        raise ValueError(
            f"{name} must be floating point on [0, {data_range:g}], got {values.dtype}; convert 8-bit images with "
            f"{name}.float() / 255."
        )
    if not torch.isfinite(values).all():
        raise ValueError(f"{name} contain NaN or infinite values.")
    if values.numel() and (values.min() < 0 or values.max() > data_range):
        raise ValueError(
            f"{name} must be on [0, {data_range:g}], got values in [{float(values.min()):.4g}, "
            f"{float(values.max()):.4g}]; scale images on [0, 255] by 1 / 255 and on [-1, 1] with (x + 1) / 2."
        )


def psnr(prediction: torch.Tensor, target: torch.Tensor, data_range: float = 1.0) -> torch.Tensor:
    """Peak signal-to-noise ratio in dB per instance: the first dimension indexes instances, the rest are averaged.

    Images are on [0, 1] by default; predictions are clamped to the data range first, as a displayed image would be.
    A perfect reconstruction gives +inf. A target off the data range (or not finite) raises a ValueError; a NaN in
    an instance's prediction (a diverged fit) gives that instance a NaN PSNR, which its callers name: the encoder
    refuses the instance's weights by id, the structure study counts the path as without a value.
    """
    if prediction.shape != target.shape:
        raise ValueError(f"prediction {tuple(prediction.shape)} and target {tuple(target.shape)} differ in shape.")
    check_value_range(target, "target", data_range)
    error = (prediction.clamp(0.0, data_range) - target).pow(2).flatten(1).mean(dim=1)
    return psnr_from_mse(error, data_range)


def psnr_from_mse(mse: torch.Tensor | float, data_range: float = 1.0) -> torch.Tensor:
    """PSNR in dB of a mean squared error (a tensor of them, or one float, computed in float64): 10 log10(data_range^2
    / mse); +inf at 0."""
    mse = mse if isinstance(mse, torch.Tensor) else torch.tensor(mse, dtype=torch.float64)
    return 10.0 * torch.log10(data_range**2 / mse)


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


def surface_chamfer(meshes: Sequence[Any], references: Sequence[np.ndarray], seed: int = 0) -> np.ndarray:
    """Chamfer distance of each reconstructed mesh to the points of its true surface; NaN where no mesh came out.

    The reconstruction score of a shape (the paper's 3-D protocol): `meshes[k]` (a `trimesh.Trimesh`, or None for an
    extraction that failed) is sampled with as many area-weighted points as `references[k]` holds, seeded by `seed`,
    and compared with `chamfer_distance`. A failure scores NaN so that it is reported, never averaged away.
    """
    import trimesh

    if len(meshes) != len(references):
        raise ValueError(f"Got {len(meshes)} meshes for {len(references)} reference point clouds.")
    scores = np.full(len(meshes), np.nan)
    for index, (mesh, reference) in enumerate(zip(meshes, references, strict=True)):
        if mesh is not None:
            points, _ = trimesh.sample.sample_surface(mesh, len(reference), seed=seed)
            scores[index] = chamfer_distance(points, reference)
    return scores
