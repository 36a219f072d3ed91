"""What a fit is fitted to: coordinates and target values of instances, from data sources or plain arrays.

Images share one pixel grid (coords (P, 2), colours (N, P, 3)); shapes each draw their own SDF samples (coords
(N, P, 3), distances (N, P, 1)), seeded by the instance's index so that any process and any rerun draws the same.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
from PIL import Image

from ..data import sample_sdf
from ..fields import image_coordinates

# SDF samples drawn per shape when fitting it (the encoding's default, and the pipeline's for data without a record)
POINTS_PER_SHAPE = 8192


def instance_targets(
    instances: Sequence[Any], modality: str, points_per_shape: int, indices: Sequence[int]
) -> tuple[torch.Tensor, torch.Tensor]:
    """Coordinates and targets of data-source instances: shared pixel centres (P, 2) for images, samples (B, P, 3)
    for shapes. Each shape draws `points_per_shape` SDF samples seeded by its index in `indices`."""
    if modality == "image":
        sizes = sorted({tuple(np.shape(instance.image)) for instance in instances})
        if len(sizes) > 1:  # checked before stacking, which would fail with numpy's own message
            raise ValueError(
                f"Images of one data set must share one size, got {sizes}; pass data_options resolution=... to "
                "resize them as they load."
            )
        images = np.stack([instance.image for instance in instances])
        height, width = images.shape[1:3]
        return image_coordinates(height, width), torch.from_numpy(images).reshape(len(instances), -1, 3).float()
    samples = [sample_sdf(shape, points_per_shape, seed=index) for shape, index in zip(instances, indices, strict=True)]
    coords = torch.stack([torch.as_tensor(points, dtype=torch.float32) for points, _ in samples])
    values = torch.stack([torch.as_tensor(sdf, dtype=torch.float32).reshape(-1, 1) for _, sdf in samples])
    return coords, values


def data_targets(
    data: Any, modality: str, points_per_shape: int = POINTS_PER_SHAPE
) -> tuple[torch.Tensor, torch.Tensor]:
    """(coords, targets) of new data in any of the forms a user holds.

    Images ("image"): a (N, H, W, 3) tensor or array in [0, 1], a PIL image or a list of them, or image instances of
    a data source. Shapes ("shape"): shape instances of a data source (SDF samples drawn per instance, seeded by
    position), or a tuple (points (N, P, 3), sdf (N, P) or (N, P, 1)).
    """
    if modality == "image":
        images = images_tensor(data)
        return image_coordinates(images.shape[1], images.shape[2]), images.reshape(images.shape[0], -1, 3)
    if isinstance(data, tuple) and len(data) == 2:
        points, sdf = (torch.as_tensor(value, dtype=torch.float32) for value in data)
        sdf = sdf.unsqueeze(-1) if sdf.dim() == 2 else sdf
        if points.dim() != 3 or points.shape[-1] != 3 or sdf.shape != (*points.shape[:2], 1):
            raise ValueError(
                f"Shape data as a tuple must be (points (N, P, 3), sdf (N, P)), got {tuple(points.shape)} and "
                f"{tuple(sdf.shape)}."
            )
        return points, sdf
    instances = list(data)
    if not instances or not all(callable(getattr(item, "sample", None)) for item in instances):
        raise ValueError(
            "3-D data must be shape instances (e.g. from hf_wlora.load_mesh_folder) or (points, sdf) samples."
        )
    return instance_targets(instances, "shape", points_per_shape, list(range(len(instances))))


def images_tensor(data: Any) -> torch.Tensor:
    """(N, H, W, 3) float32 images in [0, 1] from a tensor/array, PIL image(s) or image instances."""
    if isinstance(data, Image.Image):
        data = [data]
    if isinstance(data, (list, tuple)) and data and isinstance(data[0], Image.Image):
        arrays = [np.asarray(image.convert("RGB"), dtype=np.float32) / 255.0 for image in data]
        if len({array.shape for array in arrays}) > 1:
            raise ValueError("Images to encode must share one size; resize them first.")
        data = np.stack(arrays)
    elif isinstance(data, (list, tuple)) and data and hasattr(data[0], "image"):
        data = np.stack([np.asarray(instance.image, dtype=np.float32) for instance in data])
    images = torch.as_tensor(np.asarray(data) if not isinstance(data, torch.Tensor) else data, dtype=torch.float32)
    images = images.unsqueeze(0) if images.dim() == 3 else images
    if images.dim() != 4 or images.shape[-1] != 3 or images.shape[0] == 0:
        raise ValueError(f"Images to encode must be (N, H, W, 3) RGB in [0, 1], got shape {tuple(images.shape)}.")
    if not torch.isfinite(images).all() or images.min() < 0 or images.max() > 1:
        raise ValueError("Images to encode must hold finite values in [0, 1] (divide uint8 images by 255).")
    return images


__all__ = ["POINTS_PER_SHAPE", "data_targets", "images_tensor", "instance_targets"]
