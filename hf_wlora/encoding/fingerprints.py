"""Content hashes of an encoding's inputs, so a resumed run can prove it still reads the field and data it began with.

A resume that compared paths only would mix two base fields (or two versions of a file) in one data set without a
word. The base field's hash is stored in the data set's info (and so in the unfinished split's settings); each
instance's hash is stored with the rows that hold its weights, and checked against the source when resuming.
"""

from __future__ import annotations

import hashlib
from typing import Any

import numpy as np
import torch
from torch import nn

from ..data import ImageInstance, ShapeInstance

# Procedural shapes have nothing stored to hash: their SDF at these fixed points stands in for their content.
_SDF_PROBE_POINTS = np.random.default_rng(20261202).uniform(-1.0, 1.0, size=(1024, 3))


def _update(digest: Any, array: np.ndarray | torch.Tensor) -> None:
    """Hash an array's dtype, shape and bytes (so equal bytes of another shape or dtype hash apart)."""
    if isinstance(array, torch.Tensor):
        array = array.detach().cpu().contiguous().numpy()
    array = np.ascontiguousarray(array)
    digest.update(f"{array.dtype.str}{array.shape}".encode())
    digest.update(array.tobytes())


def module_fingerprint(module: nn.Module) -> str:
    """SHA-256 of a module's state dict: every parameter and buffer, by name, dtype, shape and value."""
    digest = hashlib.sha256()
    for name, tensor in sorted(module.state_dict().items()):
        digest.update(name.encode())
        _update(digest, tensor)
    return digest.hexdigest()


def instance_fingerprint(instance: ImageInstance | ShapeInstance) -> str:
    """SHA-256 of what an instance's fit reads: its id, label and content.

    The content is the image, or a shape's stored SDF samples, its mesh, or (procedural shapes) its SDF at 1,024
    fixed points.
    """
    digest = hashlib.sha256(f"{instance.id}\0{instance.label}\0".encode())
    if isinstance(instance, ImageInstance):
        _update(digest, instance.image)
    elif instance.points is not None and instance.values is not None:
        _update(digest, instance.points)
        _update(digest, instance.values)
    elif instance.mesh is not None:
        _update(digest, np.asarray(instance.mesh.vertices))
        _update(digest, np.asarray(instance.mesh.faces))
    else:
        _update(digest, instance.sdf(_SDF_PROBE_POINTS))
    return digest.hexdigest()


__all__ = ["instance_fingerprint", "module_fingerprint"]
