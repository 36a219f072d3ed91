"""Evaluate 3-D fields on SDF grids and extract meshes with marching cubes, batched over instances."""

from __future__ import annotations

import logging

import numpy as np
import torch
import trimesh
from torch import Tensor

from .coordinates import volume_coordinates
from .field_function import Field, evaluate_field

logger = logging.getLogger(__name__)


def sdf_grid(
    field: Field,
    resolution: int,
    latents: Tensor | None = None,
    *,
    bound: float = 1.0,
    batch_size: int | None = None,
    chunk: int = 65536,
    device: torch.device | str | None = None,
) -> Tensor:
    """Signed distances on an R^3 grid over [-bound, bound]^3: a CPU float32 tensor (N, R, R, R).

    grid[n, a, b, c] = f_n(x_a, y_b, z_c) with x = y = z = linspace(-bound, bound, R) (see
    `hf_wlora.fields.coordinates.volume_coordinates`). Evaluated `chunk` points at a time, so memory stays bounded
    at any resolution.

    Args:
        field: a `NeuralFieldModel` or a field function coords (P, 3) -> (P, 1) or (N, P, 1).
        resolution: R, grid vertices per axis (at least 2).
        latents: (N, latent_dim) for a modulated model; `None` gives one grid (mean latent, or the baked base).
        bound: half the side of the cube.
        batch_size: instances per model call; chunk: points per call; device: see `evaluate_field`.
    """
    coords = volume_coordinates(resolution, bound)
    values = evaluate_field(field, coords, latents, batch_size=batch_size, chunk=chunk, device=device)
    if values.shape[-1] != 1:
        raise ValueError(f"an SDF field must return one channel, got {values.shape[-1]}")
    return values.reshape(values.shape[0], resolution, resolution, resolution)


class MeshList(list):
    """A list of meshes (`None` for an instance that failed, only with `allow_failures=True`).

    `failures` maps the index of each failed instance to the reason, so no empty surface passes silently.
    """

    def __init__(self, meshes: list[trimesh.Trimesh | None], failures: dict[int, str]) -> None:
        super().__init__(meshes)
        self.failures = failures


def extract_mesh(grid: Tensor | np.ndarray, level: float = 0.0, bound: float = 1.0) -> trimesh.Trimesh:
    """Marching cubes on one (R, R, R) grid laid out as by `sdf_grid`; vertices in world coordinates.

    Faces are wound so that normals point towards larger values (outwards for an SDF, positive volume).
    Raises `ValueError` when the grid is not finite or has no surface at `level`.
    """
    from skimage.measure import marching_cubes  # deferred: scikit-image is slow to import

    volume = grid.detach().cpu().numpy() if isinstance(grid, Tensor) else np.asarray(grid)
    volume = volume.astype(np.float64, copy=False)
    if volume.ndim != 3 or min(volume.shape) < 2:
        raise ValueError(f"an SDF grid must be (R, R, R) with R >= 2, got shape {volume.shape}")
    bad = int((~np.isfinite(volume)).sum())
    if bad:
        raise ValueError(f"grid contains {bad} NaN or infinite values")
    low, high = float(volume.min()), float(volume.max())
    if not low < level < high:
        side = "above" if low >= level else "below"
        raise ValueError(
            f"no surface at level {level}: all values lie {side} it (range [{low:.4g}, {high:.4g}]); "
            "the field is empty or fills the whole box"
        )
    spacing = tuple(2.0 * bound / (n - 1) for n in volume.shape)
    vertices, faces, _, _ = marching_cubes(volume, level=level, spacing=spacing, allow_degenerate=False)
    # skimage's default winding ("descent") already orients faces outward for an SDF (negative inside)
    mesh = trimesh.Trimesh(vertices=vertices - bound, faces=faces, process=False)
    if len(mesh.faces) == 0 or not mesh.area > 0:
        raise ValueError("marching cubes produced an empty or degenerate surface")
    return mesh


def extract_meshes(
    grids: Tensor | np.ndarray,
    level: float = 0.0,
    bound: float = 1.0,
    *,
    allow_failures: bool = False,
) -> MeshList:
    """Meshes of N SDF grids (N, R, R, R) (or one (R, R, R)) as a `MeshList` of `trimesh.Trimesh`.

    `bound` must be the one the grids were evaluated with. An instance with NaNs, no crossing of `level`
    (grid entirely positive or negative) or an empty surface raises `ValueError` naming its index; with
    `allow_failures=True` its entry is `None` instead and the reason is in `result.failures` (and logged).
    """
    if grids.ndim == 3:
        grids = grids[None]
    if grids.ndim != 4:
        raise ValueError(f"grids must be (N, R, R, R), got shape {tuple(grids.shape)}")
    meshes: list[trimesh.Trimesh | None] = []
    failures: dict[int, str] = {}
    for index in range(grids.shape[0]):
        try:
            meshes.append(extract_mesh(grids[index], level=level, bound=bound))
        except (ValueError, RuntimeError) as error:
            message = f"instance {index}: {error}"
            if not allow_failures:
                raise ValueError(f"cannot extract a mesh for {message}") from error
            logger.warning("mesh extraction failed for %s", message)
            meshes.append(None)
            failures[index] = str(error)
    return MeshList(meshes, failures)
