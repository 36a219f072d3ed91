"""Metrics: reconstruction (PSNR, Chamfer); generation, structure and discrimination metrics come with the studies."""

from __future__ import annotations

from typing import TYPE_CHECKING

from .._lazy import lazy_attributes

_LAZY_ATTRIBUTES: dict[str, str] = {"psnr": ".reconstruction", "chamfer_distance": ".reconstruction"}

if TYPE_CHECKING:
    from .reconstruction import chamfer_distance, psnr

__all__ = ["chamfer_distance", "psnr"]

__getattr__, __dir__ = lazy_attributes(__name__, _LAZY_ATTRIBUTES, __all__)
