"""Final reconstruction metrics of a trained auto-decoder: PSNR for images, Chamfer distance for shapes.

Both decode every evaluated instance at its code mean (z = mu), the deterministic reconstruction.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import torch
from torch import Tensor

from ...data import sample_surface
from ...metrics import psnr, surface_chamfer
from ..meshing import extract_meshes, sdf_grid
from ..rendering import render_images
from .data import ImageTrainingData, ShapeTrainingData


@torch.no_grad()
def image_psnr(field: torch.nn.Module, mu: Tensor, data: ImageTrainingData, batch_size: int = 64) -> float:
    """Mean over instances of each image's PSNR, rendered at the stored resolution."""
    rendered = render_images(field, data.resolution, latents=mu, batch_size=batch_size)
    return float(psnr(rendered, data.images.permute(0, 2, 3, 1).cpu()).mean())


@torch.no_grad()
def shape_chamfer(
    field: torch.nn.Module,
    mu: Tensor,
    data: ShapeTrainingData,
    num_instances: int,
    resolution: int,
    num_points: int,
    seed: int = 0,
) -> dict[str, Any]:
    """Chamfer distance of the first `num_instances` shapes: marching cubes on an SDF grid vs the true surface.

    Returns {"chamfer": mean over the meshes that could be extracted (NaN if none), "chamfer_instances": how many,
    "mesh_failures": {instance id: reason}} so that an empty reconstruction is reported, never averaged away.
    """
    count = min(num_instances, len(data))
    grids = sdf_grid(field, resolution, latents=mu[:count], batch_size=1)
    meshes = extract_meshes(grids, allow_failures=True)
    references = [sample_surface(data.shapes[index], num_points, seed=[seed, index]) for index in range(count)]
    distances = surface_chamfer(meshes, references, seed=seed)
    found = distances[np.isfinite(distances)]
    return {
        "chamfer": float(found.mean()) if found.size else math.nan,
        "chamfer_instances": int(found.size),
        "mesh_failures": {data.ids[index]: reason for index, reason in meshes.failures.items()},
    }


__all__ = ["image_psnr", "shape_chamfer"]
