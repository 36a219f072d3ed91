"""Render 2-D fields to images at any resolution, batched over instances."""

from __future__ import annotations

import torch
from PIL import Image
from torch import Tensor

from .coordinates import image_coordinates
from .field_function import Field, evaluate_field


def render_images(
    field: Field,
    resolution: int | tuple[int, int],
    latents: Tensor | None = None,
    *,
    batch_size: int | None = None,
    chunk: int = 65536,
    device: torch.device | str | None = None,
) -> Tensor:
    """Render N images, a CPU float32 tensor (N, H, W, C) clamped to [0, 1] (C = 3 for RGB fields).

    Pixels are sampled at their centres (`hf_wlora.fields.coordinates.image_coordinates`, the training
    convention), so any resolution renders the same continuous field.

    Args:
        field: a `NeuralFieldModel` or a field function coords (P, 2) -> (P, C) or (N, P, C).
        resolution: H = W, or (H, W).
        latents: (N, latent_dim) for a modulated model; `None` renders one image (mean latent, or the baked base).
        batch_size: instances per model call; chunk: pixels per call; device: see `evaluate_field`.
    """
    height, width = (resolution, resolution) if isinstance(resolution, int) else tuple(resolution)
    coords = image_coordinates(height, width)
    values = evaluate_field(field, coords, latents, batch_size=batch_size, chunk=chunk, device=device)
    # clamp: field functions (e.g. adapted fields without a sigmoid) may overshoot; images live in [0, 1]
    return values.reshape(values.shape[0], height, width, values.shape[-1]).clamp(0.0, 1.0)


def to_pil(images: Tensor) -> list[Image.Image]:
    """(N, H, W, C) or (H, W, C) images in [0, 1], C in {1, 3}, to a list of PIL images (RGB or L)."""
    if images.dim() == 3:
        images = images.unsqueeze(0)
    if images.dim() != 4 or images.shape[-1] not in (1, 3):
        raise ValueError(f"images must be (N, H, W, C) with C in (1, 3), got {tuple(images.shape)}")
    arrays = (images.detach().float().cpu().clamp(0.0, 1.0) * 255.0).round().to(torch.uint8).numpy()
    # PIL infers the mode from the uint8 array: (H, W) -> "L", (H, W, 3) -> "RGB" (its `mode=` argument is deprecated)
    if arrays.shape[-1] == 1:
        return [Image.fromarray(array[..., 0]) for array in arrays]
    return [Image.fromarray(array) for array in arrays]


def image_grid(rows: list[Tensor], scale: int = 1, padding: int = 2) -> Image.Image:
    """Tile rows of (N, H, W, C) images in [0, 1] into one RGB picture, enlarged `scale` times (nearest neighbour).

    Rows may hold different numbers of images (shorter rows are left blank on the right) but one image size.
    """
    if not rows or any(row.dim() != 4 or row.shape[1:] != rows[0].shape[1:] for row in rows):
        raise ValueError("image_grid needs a non-empty list of (N, H, W, C) tensors of one image size.")
    height, width = rows[0].shape[1] * scale + padding, rows[0].shape[2] * scale + padding
    columns = max(len(row) for row in rows)
    grid = Image.new("RGB", (columns * width + padding, len(rows) * height + padding), "white")
    for row_index, row in enumerate(rows):
        for column_index, tile in enumerate(to_pil(row)):
            tile = tile.convert("RGB").resize((tile.width * scale, tile.height * scale), Image.Resampling.NEAREST)
            grid.paste(tile, (padding + column_index * width, padding + row_index * height))
    return grid
