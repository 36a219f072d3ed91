"""Pictures of weights: decode them with a pipeline and tile the results (sample grids, training-set grids)."""

from __future__ import annotations

from collections.abc import Mapping

import torch
from PIL import Image

from .pipeline_weight_space import WeightSpacePipeline


def decoded_tiles(
    pipeline: WeightSpacePipeline,
    weights: torch.Tensor | Mapping[str, torch.Tensor],
    resolution: int | None = None,
    mesh_resolution: int | None = None,
) -> torch.Tensor:
    """(N, H, W, 3) pictures in [0, 1] of N instances' weights: the images (2-D) or renderings of the meshes (3-D)."""
    if pipeline.modality == "image":
        return pipeline.decode(weights, "pt", resolution=resolution).images
    from ..fields import render_meshes

    return render_meshes(pipeline.decode(weights, "mesh", mesh_resolution=mesh_resolution).meshes)


def tile_grid(tiles: torch.Tensor, columns: int, scale: int = 1) -> Image.Image:
    """Tile (N, H, W, 3) pictures into rows of `columns`, enlarged `scale` times."""
    from ..fields import image_grid

    return image_grid(list(tiles.split(columns)), scale=scale)


def side_by_side(pictures: list[Image.Image], gap: int = 16) -> Image.Image:
    """Place pictures left to right on a white background, `gap` pixels apart, aligned at the top."""
    width = sum(picture.width for picture in pictures) + gap * (len(pictures) - 1)
    combined = Image.new("RGB", (width, max(picture.height for picture in pictures)), "white")
    left = 0
    for picture in pictures:
        combined.paste(picture, (left, 0))
        left += picture.width + gap
    return combined


def picture_scale(pipeline: WeightSpacePipeline) -> int:
    """Enlargement that makes small decoded images readable (meshes are rendered large already)."""
    return max(1, 128 // pipeline.config.resolution) if pipeline.modality == "image" else 1


__all__ = ["decoded_tiles", "picture_scale", "side_by_side", "tile_grid"]
