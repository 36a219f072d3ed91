"""Evaluate any "field" on a set of coordinates, chunked, for one or many instances.

Decoding (`render_images`, `sdf_grid`) accepts either

* a `NeuralFieldModel` (modulated, with optional `latents` (N, latent_dim), one instance per latent; or baked),
  or
* a **field function** `fn(coords) -> values`: coords is one chunk of shared coordinates (P, coord_dim) and
  values is (P, C) for one instance or (N, P, C) for N instances evaluated at once. Anything that maps
  coordinates to values fits: a lambda, an analytic SDF, a PEFT-adapted field (`lambda x: peft_model(x).values`)
  or a batched adapter forward over N stacked instances.

Chunks of at most `chunk` points bound the memory (a model call then holds batch_size x chunk points); results
are gathered on the CPU in float32, so only the final (N, P, C) tensor has to fit in host memory.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any, TypeAlias

import torch
from torch import Tensor

if TYPE_CHECKING:
    from .modeling_neural_field import NeuralFieldModel

FieldFunction: TypeAlias = Callable[[Tensor], Tensor]
# NeuralFieldModel is recognised by its config (duck typing) so that decoding a field function never imports
# transformers.
Field: TypeAlias = "NeuralFieldModel | FieldFunction"


def is_neural_field_model(field: Any) -> bool:
    """Whether `field` is a NeuralFieldModel (checked by config, so transformers need not be imported here)."""
    return getattr(getattr(field, "config", None), "model_type", None) == "neural_field"


def field_device(field: Field, device: torch.device | str | None = None) -> torch.device:
    """Where to put the coordinates: `device` if given, else the model's parameters' device, else the CPU."""
    if device is not None:
        return torch.device(device)
    if isinstance(field, torch.nn.Module):
        for tensor in field.parameters():
            return tensor.device
    return torch.device("cpu")


@torch.no_grad()
def evaluate_field(
    field: Field,
    coords: Tensor,
    latents: Tensor | None = None,
    *,
    batch_size: int | None = None,
    chunk: int = 65536,
    device: torch.device | str | None = None,
) -> Tensor:
    """Values of `field` at shared coords (P, coord_dim): a CPU float32 tensor (N, P, C).

    Args:
        field: a `NeuralFieldModel` or a field function (see the module docstring).
        coords: (P, coord_dim) coordinates shared by all instances.
        latents: (N, latent_dim) per-instance latents, only for a modulated `NeuralFieldModel`; `None` decodes the
            mean latent (modulated) or the base field (baked) as N = 1.
        batch_size: instances per model call (latents only; default all). Field functions decide N themselves.
        chunk: points per call.
        device: device of the coordinates passed to the field (default: the model's device, or CPU).
    """
    if chunk <= 0:
        raise ValueError(f"chunk must be positive, got {chunk}")
    if coords.dim() != 2:
        raise ValueError(f"coords must be (P, coord_dim), got {tuple(coords.shape)}")
    coords = coords.to(field_device(field, device))

    if is_neural_field_model(field):
        if latents is not None and field.config.baked:
            raise ValueError("a baked NeuralFieldModel has no latent: pass latents=None")
        if latents is None:
            groups: list[Tensor | None] = [None]
        else:
            if latents.dim() != 2:
                raise ValueError(f"latents must be (N, latent_dim), got {tuple(latents.shape)}")
            step = batch_size or latents.shape[0]
            if step <= 0:
                raise ValueError(f"batch_size must be positive, got {batch_size}")
            latents = latents.to(coords.device)
            groups = list(latents.split(step))

        def call(points: Tensor, group: Tensor | None) -> Tensor:
            return field(points, latents=group).values

    elif callable(field):
        if latents is not None:
            raise ValueError("latents are only accepted with a NeuralFieldModel; bind them into the field function")
        groups = [None]

        def call(points: Tensor, group: Tensor | None) -> Tensor:
            return field(points)

    else:
        raise TypeError(f"field must be a NeuralFieldModel or a callable coords -> values, got {type(field).__name__}")

    results = []
    for group in groups:
        pieces = []
        for points in coords.split(chunk):
            values = call(points, group)
            if values.dim() == 2:
                values = values.unsqueeze(0)
            if values.dim() != 3 or values.shape[-2] != points.shape[0]:
                raise ValueError(
                    f"field returned shape {tuple(values.shape)} for {points.shape[0]} points; "
                    "expected (P, C) or (N, P, C)"
                )
            pieces.append(values.detach().to(device="cpu", dtype=torch.float32))
        results.append(torch.cat(pieces, dim=1))
    return torch.cat(results, dim=0)
