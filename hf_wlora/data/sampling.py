"""Coordinate samplers: (coordinates, target values) pairs for fitting neural fields.

Conventions (shared with the fields' rendering code, which imports them from here):
  - 2-D: a pixel's coordinate is its centre, `(x, y)` in [-1, 1]^2, x along the width (left to right) and y along
    the height (top to bottom), the convention of `torch.nn.functional.grid_sample(..., align_corners=False)`.
    Grids are flattened row-major, so `values = image.reshape(H * W, C)` matches `pixel_centers(H, W)`.
  - 3-D: points in the cube [-1, 1]^3, signed distance negative inside.
Every sampler takes `seed` (an int, a sequence of ints or a `numpy.random.Generator`), so the same call gives the
same samples on every machine. All outputs are float32 numpy arrays.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    from .base import ShapeInstance

SeedLike = int | Sequence[int] | np.random.Generator

SdfFn = Callable[[np.ndarray], np.ndarray]


def _rng(seed: SeedLike) -> np.random.Generator:
    # default_rng passes a Generator through unchanged, so samplers can share one stream.
    return np.random.default_rng(seed)


# ---------------------------------------------------------------------------------------------------------------
# 2-D
# ---------------------------------------------------------------------------------------------------------------


def pixel_centers(height: int, width: int) -> np.ndarray:
    """(H * W, 2) float32 pixel-centre coordinates `(x, y)` in [-1, 1], row-major (see the module docstring)."""
    xs = (2.0 * np.arange(width) + 1.0) / width - 1.0
    ys = (2.0 * np.arange(height) + 1.0) / height - 1.0
    grid_y, grid_x = np.meshgrid(ys, xs, indexing="ij")
    return np.stack([grid_x.ravel(), grid_y.ravel()], axis=-1).astype(np.float32)


def image_grid_samples(image: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """All pixels of `image` (H, W, C): coordinates (H * W, 2) and values (H * W, C)."""
    height, width = image.shape[:2]
    values = np.asarray(image, dtype=np.float32).reshape(height * width, -1)
    return pixel_centers(height, width), values


def random_pixel_samples(
    image: np.ndarray, num_pixels: int, seed: SeedLike = 0, replace: bool = False
) -> tuple[np.ndarray, np.ndarray]:
    """A random subset of `num_pixels` pixels of `image`: coordinates (N, 2) and values (N, C).

    Without replacement by default (then `num_pixels` must not exceed H * W).
    """
    coords, values = image_grid_samples(image)
    if not replace and num_pixels > len(coords):
        raise ValueError(f"num_pixels={num_pixels} exceeds the {len(coords)} pixels of the image; pass replace=True")
    index = _rng(seed).choice(len(coords), size=num_pixels, replace=replace)
    return coords[index], values[index]


# ---------------------------------------------------------------------------------------------------------------
# 3-D
# ---------------------------------------------------------------------------------------------------------------


def uniform_points(num_points: int, seed: SeedLike = 0, bound: float = 1.0, dim: int = 3) -> np.ndarray:
    """(N, dim) float32 points uniform in the cube [-bound, bound]^dim."""
    return _rng(seed).uniform(-bound, bound, size=(num_points, dim)).astype(np.float32)


def sdf_gradient(sdf_fn: SdfFn, points: np.ndarray, eps: float = 1e-4) -> np.ndarray:
    """Central finite-difference gradient (N, 3) of `sdf_fn` at `points`, in one batched call of `sdf_fn`."""
    points = np.asarray(points, dtype=np.float64)
    offsets = np.concatenate([np.eye(3), -np.eye(3)]) * eps  # (6, 3)
    values = np.asarray(sdf_fn((points[None] + offsets[:, None]).reshape(-1, 3)), dtype=np.float64)
    values = values.reshape(6, len(points))
    return ((values[:3] - values[3:]) / (2 * eps)).T


def project_to_surface(
    sdf_fn: SdfFn, points: np.ndarray, num_steps: int = 5, eps: float = 1e-4, tol: float = 1e-7
) -> np.ndarray:
    """Move points onto the zero level set with Newton steps along the SDF gradient: p <- p - f(p) grad / |grad|^2.

    For an exact SDF one step lands on the surface (|grad| = 1); further steps, taken only by points with
    |f| >= `tol`, fix points whose step crossed a kink of a union. Check the result with `abs(sdf_fn(p)) < tol`:
    a few points may not converge.
    """
    points = np.asarray(points, dtype=np.float64).copy()
    active = np.arange(len(points))
    for _ in range(num_steps):
        value = np.asarray(sdf_fn(points[active]), dtype=np.float64)
        moving = np.abs(value) >= tol
        active, value = active[moving], value[moving]
        if not len(active):
            break
        grad = sdf_gradient(sdf_fn, points[active], eps)
        norm2 = np.maximum((grad**2).sum(-1), 1e-12)
        points[active] -= (value / norm2)[:, None] * grad
    return points


def surface_points_from_sdf(
    sdf_fn: SdfFn,
    num_points: int,
    seed: SeedLike = 0,
    band: float = 0.05,
    tol: float = 1e-5,
    bound: float = 1.0,
    batch_size: int = 32768,
    max_rounds: int = 100,
    cells: int = 32,
) -> np.ndarray:
    """(N, 3) float32 points on the zero level set of an SDF, close to uniform over the surface area.

    Uniform points are kept when |sdf| < `band`; for a thin band their density is proportional to the surface area
    (the band's volume is about 2 * band * area), so projecting them onto the surface (`project_to_surface`) gives
    area-uniform samples without a mesh. Points that end with |sdf| >= `tol` are dropped and more are drawn.

    To waste fewer evaluations, the cube is split into `cells`^3 cells and points are drawn only in cells that can
    meet the band: |sdf(cell centre)| < band + half the cell diagonal. That test is exact for any 1-Lipschitz
    `sdf_fn` (exact SDFs, unions of them with `min`, and mesh SDFs all are), so the density stays uniform inside
    the band.
    """
    rng = _rng(seed)
    half = bound / cells
    axis = np.linspace(-bound + half, bound - half, cells)
    centres = np.stack(np.meshgrid(axis, axis, axis, indexing="ij"), axis=-1).reshape(-1, 3)
    centres = centres[np.abs(sdf_fn(centres)) < band + half * np.sqrt(3.0)]
    found: list[np.ndarray] = []
    count = 0
    for _ in range(max_rounds if len(centres) else 0):
        candidates = centres[rng.integers(len(centres), size=batch_size)] + rng.uniform(-half, half, (batch_size, 3))
        candidates = candidates[np.abs(sdf_fn(candidates)) < band]
        if len(candidates):
            projected = project_to_surface(sdf_fn, candidates)
            inside_cube = np.all(np.abs(projected) <= bound, axis=-1)
            projected = projected[(np.abs(sdf_fn(projected)) < tol) & inside_cube]
            found.append(projected)
            count += len(projected)
        if count >= num_points:
            return np.concatenate(found)[:num_points].astype(np.float32)
    raise RuntimeError(
        f"Found only {count} of {num_points} surface points: is the zero level set of the SDF inside "
        f"[-{bound}, {bound}]^3 and non-empty?"
    )


def mesh_surface_points(vertices: np.ndarray, faces: np.ndarray, num_points: int, seed: SeedLike = 0) -> np.ndarray:
    """(N, 3) float32 points uniform over a triangle mesh's area (faces chosen by area, uniform barycentric)."""
    rng = _rng(seed)
    triangles = np.asarray(vertices, dtype=np.float64)[np.asarray(faces)]
    areas = 0.5 * np.linalg.norm(
        np.cross(triangles[:, 1] - triangles[:, 0], triangles[:, 2] - triangles[:, 0]), axis=-1
    )
    if not areas.sum() > 0:
        raise ValueError("The mesh has zero surface area, so it has no surface to sample.")
    face = rng.choice(len(triangles), size=num_points, p=areas / areas.sum())
    u, v = rng.random((2, num_points))
    flip = u + v > 1  # reflect points of the parallelogram's far half back into the triangle
    u[flip], v[flip] = 1 - u[flip], 1 - v[flip]
    t = triangles[face]
    return (t[:, 0] + u[:, None] * (t[:, 1] - t[:, 0]) + v[:, None] * (t[:, 2] - t[:, 0])).astype(np.float32)


def near_surface_points(
    surface: np.ndarray, seed: SeedLike = 0, noise_scales: Sequence[float] = (0.01, 0.05)
) -> np.ndarray:
    """Surface points plus isotropic Gaussian noise; point k uses `noise_scales[k % len(noise_scales)]` as std.

    Two scales (as in DeepSDF) give both a sharp zero crossing and the SDF's slope further out.
    """
    scales = np.asarray(noise_scales, dtype=np.float64)[np.arange(len(surface)) % len(noise_scales)]
    noise = _rng(seed).normal(size=(len(surface), 3)) * scales[:, None]
    return (np.asarray(surface, dtype=np.float64) + noise).astype(np.float32)


def sample_surface(shape: ShapeInstance, num_points: int, seed: SeedLike = 0) -> np.ndarray:
    """(N, 3) float32 surface points of any shape.

    Meshes: area-weighted samples of the (normalised) mesh. Analytic SDFs: `surface_points_from_sdf`. Stored SDF
    samples only: the `num_points` stored points with the smallest |sdf| (an approximation, as good as the file; all
    of them, fewer than `num_points`, when the file holds fewer). Every kind comes in random order (seeded), so a
    prefix is a random subset, as the 3-D study's EMD takes one: the stored points would otherwise come nearest first.
    """
    if shape.mesh is not None:
        return mesh_surface_points(shape.mesh.vertices, shape.mesh.faces, num_points, seed)
    if shape.sdf_fn is not None:
        return surface_points_from_sdf(shape.sdf_fn, num_points, seed)
    nearest = np.argsort(np.abs(shape.values), kind="stable")[:num_points]
    return np.asarray(shape.points[_rng(seed).permutation(nearest)], dtype=np.float32)


def sample_sdf(
    shape: ShapeInstance,
    num_points: int,
    seed: SeedLike = 0,
    uniform_fraction: float = 0.2,
    noise_scales: Sequence[float] = (0.01, 0.05),
    bound: float = 1.0,
) -> tuple[np.ndarray, np.ndarray]:
    """(points (N, 3), sdf (N,)) float32 training samples for any shape.

    Shapes with an SDF function: `uniform_fraction` of the points uniform in [-bound, bound]^3, the rest near the
    surface (`near_surface_points` at `noise_scales`), with their exact SDF values. Stored samples: a random subset
    of the stored rows (without replacement when there are enough).
    """
    rng = _rng(seed)
    if shape.sdf_fn is None:
        total = len(shape.points)
        index = rng.choice(total, size=num_points, replace=num_points > total)
        return np.asarray(shape.points[index], dtype=np.float32), np.asarray(shape.values[index], dtype=np.float32)
    num_uniform = round(uniform_fraction * num_points)
    uniform = uniform_points(num_uniform, rng, bound)
    near = near_surface_points(sample_surface(shape, num_points - num_uniform, rng), rng, noise_scales)
    # Noise can push a few points out of the cube the field is trained on; clipping keeps their SDF exact.
    points = np.clip(np.concatenate([uniform, near]), -bound, bound).astype(np.float32)
    return points, np.asarray(shape.sdf(points), dtype=np.float32)
