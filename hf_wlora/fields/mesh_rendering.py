"""Pictures of meshes for grids and reports: a shaded matplotlib rendering (headless, no GPU, no display)."""

from __future__ import annotations

import numpy as np
import torch
from torch import Tensor

# Elevation and azimuth of the camera, in degrees: a three-quarter view that shows the three main axes.
VIEW = (25.0, -60.0)
# Marching cubes indexes the grid as (x, y, z) and matplotlib's z is up: shown as (x, -z, y), a rotation about x that
# puts the field's y up (swapping y and z alone would be a reflection: every shape drawn as its mirror image).
DISPLAY_ROTATION = np.array([[1.0, 0.0, 0.0], [0.0, 0.0, -1.0], [0.0, 1.0, 0.0]])


def render_meshes(meshes: list, size: int = 128, bound: float = 1.0) -> Tensor:
    """Render each `trimesh.Trimesh` (or None, a blank tile) to an RGB image; returns (N, size, size, 3) in [0, 1].

    Faces are shaded by the angle between their normal and a fixed light, so the shape reads without colour.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    light = np.array([0.4, -0.5, 0.75])
    light /= np.linalg.norm(light)
    tiles = []
    for mesh in meshes:
        figure = plt.figure(figsize=(1, 1), dpi=size)
        axes = figure.add_axes((0, 0, 1, 1), projection="3d")
        axes.set_axis_off()
        for limits in (axes.set_xlim, axes.set_ylim, axes.set_zlim):
            limits(-bound, bound)
        axes.view_init(*VIEW)
        axes.set_box_aspect((1, 1, 1), zoom=1.45)  # matplotlib leaves a wide margin around 3-D axes by default
        if mesh is not None and len(mesh.faces):
            shade = 0.35 + 0.65 * np.abs(mesh.face_normals @ light)
            colours = np.stack([shade * 0.75, shade * 0.85, shade, np.ones_like(shade)], axis=1)
            vertices = mesh.vertices @ DISPLAY_ROTATION.T
            collection = axes.plot_trisurf(*vertices.T, triangles=mesh.faces, linewidth=0, antialiased=False)
            collection.set_facecolors(colours)
        figure.canvas.draw()
        tiles.append(np.asarray(figure.canvas.buffer_rgba())[..., :3].copy())
        plt.close(figure)
    return torch.from_numpy(np.stack(tiles)).float() / 255.0
