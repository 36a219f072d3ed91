"""Coordinate conventions shared by training, rendering and meshing.

Images: pixel (row i, column j) of an H x W image sits at its **centre**,
    x = (2 j + 1) / W - 1,   y = (2 i + 1) / H - 1,
so coords lie strictly inside [-1, 1] and an image of any resolution samples the same continuous field (this is
`torch.nn.functional.grid_sample`'s `align_corners=False` convention). A coordinate is (x, y) = (column, row),
and pixels are listed row-major, so `image.reshape(H * W, C)` (image (H, W, C)) lines up with
`image_coordinates(H, W)`. Train on exactly these coordinates.

Volumes: an R^3 grid samples `linspace(-bound, bound, R)` on every axis, **including** both ends (the vertex
convention marching cubes expects), with `indexing="ij"`: grid[a, b, c] = f(x_a, y_b, z_c).
"""

from __future__ import annotations

import torch
from torch import Tensor


def image_coordinates(
    height: int,
    width: int,
    *,
    device: torch.device | str | None = None,
    dtype: torch.dtype = torch.float32,
) -> Tensor:
    """Pixel-centre coordinates of an H x W image, shape (H * W, 2), (x, y) order, row-major."""
    if height <= 0 or width <= 0:
        raise ValueError(f"image size must be positive, got {height}x{width}")
    ys = (2 * torch.arange(height, device=device, dtype=torch.float64) + 1) / height - 1
    xs = (2 * torch.arange(width, device=device, dtype=torch.float64) + 1) / width - 1
    grid_y, grid_x = torch.meshgrid(ys, xs, indexing="ij")
    return torch.stack([grid_x, grid_y], dim=-1).reshape(-1, 2).to(dtype)


def volume_coordinates(
    resolution: int,
    bound: float = 1.0,
    *,
    device: torch.device | str | None = None,
    dtype: torch.dtype = torch.float32,
) -> Tensor:
    """Vertices of an R^3 grid over [-bound, bound]^3, shape (R^3, 3), (x, y, z) order, 'ij' indexing."""
    if resolution < 2:
        raise ValueError(f"volume resolution must be at least 2, got {resolution}")
    if not bound > 0:
        raise ValueError(f"bound must be positive, got {bound}")
    axis = torch.linspace(-bound, bound, resolution, device=device, dtype=torch.float64)
    grid = torch.stack(torch.meshgrid(axis, axis, axis, indexing="ij"), dim=-1)
    return grid.reshape(-1, 3).to(dtype)
