"""Load a folder of meshes (.obj .ply .off .glb .gltf .stl, read by trimesh) as `ShapeInstance`s.

Each mesh is normalised (bounding-box centre to the origin, then scaled so its farthest vertex lies at `radius`,
0.9 by default, like the built-in shapes) and gets a `MeshSDF`: winding-number sign, so meshes that are not
watertight still get correct inside/outside far from their holes, and exact distance to the triangles.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from .base import BadItems, OnError, PathLike, ShapeCollection, ShapeInstance, read_folder, relative_id
from .mesh_sdf import MeshSDF

MESH_EXTENSIONS: tuple[str, ...] = (".obj", ".ply", ".off", ".glb", ".gltf", ".stl")


def read_mesh(path: PathLike) -> Any:
    """Read one file as a single `trimesh.Trimesh` (scenes such as .glb are merged into one mesh).

    Raises:
        ValueError: naming the file, if it cannot be read, has no faces, has non-finite vertices, or has zero
            surface area (every face degenerate: coincident or collinear vertices).
    """
    import trimesh

    try:
        # Unprocessed first: trimesh's processing silently drops NaN/inf vertices and the faces using them.
        mesh = trimesh.load(str(path), force="mesh", process=False)
    except Exception as error:  # trimesh raises many types for corrupt files
        raise ValueError(f"{path}: cannot be read as a mesh ({type(error).__name__}: {error})") from error
    if not isinstance(mesh, trimesh.Trimesh) or len(mesh.faces) == 0:
        raise ValueError(f"{path}: the mesh has no faces (empty, or a point cloud)")
    if not np.isfinite(mesh.vertices).all():
        raise ValueError(f"{path}: the mesh has NaN or infinite vertex coordinates")
    mesh.process()  # merge duplicate vertices, as trimesh.load does by default
    # Relative to the bounding-box diagonal, so rounding on collinear vertices far from the origin still counts as 0.
    if not mesh.area > 1e-12 * mesh.scale**2:
        raise ValueError(
            f"{path}: the mesh has zero surface area (every face is degenerate: its vertices coincide or are "
            "collinear), so it has no surface to fit"
        )
    return mesh


def normalize_mesh(mesh: Any, radius: float = 0.9) -> Any:
    """A copy of `mesh` centred on its bounding-box centre and scaled so its farthest vertex is at `radius`.

    The bounding-box centre (rather than the vertex mean) does not depend on how densely parts are tessellated.
    """
    mesh = mesh.copy()
    mesh.apply_translation(-(mesh.vertices.min(0) + mesh.vertices.max(0)) / 2)
    extent = float(np.linalg.norm(mesh.vertices, axis=1).max())
    if extent <= 0:
        raise ValueError("the mesh is a single point")
    mesh.apply_scale(radius / extent)
    return mesh


def mesh_to_shape(
    mesh: Any, id: str, label: int = 0, radius: float | None = 0.9, source: str | None = None
) -> ShapeInstance:
    """Wrap a `trimesh.Trimesh` as a `ShapeInstance` (normalised into the ball of `radius` unless it is None)."""
    if radius is not None:
        mesh = normalize_mesh(mesh, radius)
    return ShapeInstance(id=id, label=label, sdf_fn=MeshSDF(mesh.vertices, mesh.faces), mesh=mesh, source=source)


def load_mesh_folder(
    root: PathLike,
    radius: float | None = 0.9,
    on_error: OnError = "raise",
    extensions: Sequence[str] = MESH_EXTENSIONS,
) -> ShapeCollection:
    """Load every mesh under `root` as a `ShapeInstance` with a robust SDF (see the module docstring).

    Args:
        root: `root/<class>/**/mesh.obj` (class = first-level subfolder, e.g. a ShapeNet synset folder), or meshes
            directly in `root` (a single class named after the folder). Ids are paths relative to `root`.
        radius: Normalise every mesh into the ball of this radius; None keeps the file's coordinates.
        on_error: `"raise"` (default) raises a `ValueError` on the first bad mesh (unreadable, no faces, non-finite
            vertices, zero surface area); `"skip"` skips bad meshes, lists them in `.skipped` and logs a warning
            naming each.
        extensions: File extensions to load (case-insensitive).

    Example:
        >>> shapes = load_mesh_folder("meshes/")
        >>> shapes[0].sdf(points), shapes.class_names
    """
    bad_items = BadItems(on_error)
    root = Path(root)
    items, class_names = read_folder(root, extensions, bad_items, read_mesh, "Repair or remove the file")
    shapes = [
        mesh_to_shape(mesh, relative_id(path, root), label, radius, source=str(path)) for path, label, mesh in items
    ]
    bad_items.warn(root)
    return ShapeCollection(shapes, class_names, bad_items.skipped)
