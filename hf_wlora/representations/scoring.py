"""How well weights reconstruct their instances: PSNR of the decoded image, Chamfer distance of the decoded mesh."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import torch

from ..checks import check_int
from ..data import sample_surface
from ..fields import extract_meshes, sdf_grid
from ..metrics import psnr, surface_chamfer
from .kinds import Representation

# Surface points per cloud when scoring a shape's reconstruction (the paper's 3-D protocol uses 2048).
SCORE_POINTS = 2048


def reconstruction_scores(
    representation: Representation,
    factors: Mapping[str, torch.Tensor],
    instances: Sequence[Any],
    coords: torch.Tensor,
    targets: torch.Tensor,
    mesh_resolution: int = 64,
    seed: int = 0,
    surface_points: int = SCORE_POINTS,
) -> np.ndarray:
    """One score per instance of `factors` (N, ...): the PSNR of each decoded image against `targets` at `coords`
    (as `instance_targets` gives them), or the Chamfer distance between each decoded shape's mesh (marching cubes at
    `mesh_resolution`) and its instance's true surface, `surface_points` points each, seeded by `seed` (NaN, and a
    log line, where no mesh comes out).

    The Chamfer of a finite sample scatters with the sample: at the protocol's 2,048 points by 1-6% of its value from
    one seed to the next (benchmarks/RESULTS.md), so comparisons of nearly equal shapes (the structure study's
    barriers) take more points."""
    if representation.modality == "image":
        with torch.no_grad():
            values = representation.forward(factors, coords.expand(len(instances), *coords.shape))
        return psnr(values.to(targets.device), targets).cpu().numpy()
    check_int(surface_points, "surface_points", minimum=1)
    grids = sdf_grid(representation.field_function(factors), mesh_resolution)
    meshes = extract_meshes(grids, allow_failures=True)  # a failed mesh scores NaN, and the log names it
    # once per distinct instance: the structure study scores each of its instances at every point of a path
    distinct = {id(shape): shape for shape in instances}
    surfaces = {key: sample_surface(shape, surface_points, seed=seed) for key, shape in distinct.items()}
    references = [surfaces[id(shape)] for shape in instances]
    return surface_chamfer(meshes, references, seed=seed)


__all__ = ["SCORE_POINTS", "reconstruction_scores"]
