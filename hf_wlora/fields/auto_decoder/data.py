"""Turn any `hf_wlora.data` source into the tensors stage-1 training consumes.

- Images: the stored images (N, 3, H, W) stay on the training device; each stage trains on them downsampled to its
  resolution with an area filter (the average of the covered pixels, i.e. what a camera at that resolution sees),
  at the pixel-centre coordinates of `image_coordinates`.
- Shapes: `sdf_samples` (points, signed distance) pairs per shape, drawn once with `hf_wlora.data.sample_sdf`
  (seeded per instance) and cached in `output_dir/sdf_samples.safetensors`, so a resumed run and every process
  train on identical samples without drawing them again. The loss is DeepSDF's L1 on distances clamped to
  [-sdf_clamp, sdf_clamp] (accuracy near the surface matters, far-away values do not), made to keep a gradient
  where DeepSDF's has none (`ShapeTrainingData.loss`).
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

from ...data import InstanceDataset, ShapeInstance, open_data_source
from ..coordinates import image_coordinates
from .config import FieldTrainingConfig, StageConfig

logger = logging.getLogger(__name__)

SDF_CACHE_NAME = "sdf_samples.safetensors"


@dataclass
class Batch:
    """What one process trains on in one step: coordinates (P, d) shared or (B, P, d), and targets (B, P, C)."""

    coords: Tensor
    targets: Tensor


class ImageTrainingData:
    """Square RGB images as a (N, 3, H, W) tensor on `device`, served at each stage's resolution."""

    modality = "image"

    def __init__(self, dataset: InstanceDataset, num_instances: int, device: torch.device) -> None:
        instances = [dataset[i] for i in range(num_instances)]
        arrays = [instance.image for instance in instances]
        height, width = arrays[0].shape[:2]
        if height != width:
            raise ValueError(
                f"training needs square images, got {width}x{height}; set data_options.resolution to centre-crop "
                "and resize them."
            )
        self.ids = [instance.id for instance in instances]
        self.labels = torch.tensor([instance.label for instance in instances], dtype=torch.int64)
        self.class_names = list(dataset.class_names)
        self.images = torch.from_numpy(np.stack(arrays)).permute(0, 3, 1, 2).contiguous().to(device)
        self.resolution = height
        self._stage_cache: dict[int, Tensor] = {}

    def __len__(self) -> int:
        return self.images.shape[0]

    def check_stage(self, index: int, stage: StageConfig) -> None:
        if stage.resolution > self.resolution:
            raise ValueError(
                f"stages[{index}]: resolution {stage.resolution} exceeds the images' {self.resolution} px; lower it "
                "or load the images at a higher resolution (data_options.resolution)."
            )

    def targets_at(self, resolution: int) -> Tensor:
        """All images at `resolution`, flattened row-major to (N, resolution^2, 3) like `image_coordinates`."""
        if resolution not in self._stage_cache:
            images = self.images
            if resolution != self.resolution:
                images = F.interpolate(images, size=(resolution, resolution), mode="area")
            self._stage_cache = {resolution: images.flatten(2).transpose(1, 2).contiguous()}  # one stage at a time
        return self._stage_cache[resolution]

    def point_selection(self, stage: StageConfig, batch_size: int, generator: torch.Generator) -> Tensor | None:
        """Random pixel indices (batch_size, points) when the stage trains on a subset, else None (all pixels)."""
        if stage.points is None:
            return None
        return torch.randint(stage.resolution**2, (batch_size, stage.points), generator=generator)

    def batch(self, stage: StageConfig, indices: Tensor, selection: Tensor | None) -> Batch:
        targets = self.targets_at(stage.resolution)[indices]
        coords = image_coordinates(stage.resolution, stage.resolution, device=targets.device)
        if selection is not None:
            coords = coords[selection]
            targets = targets.gather(1, selection[..., None].expand(-1, -1, targets.shape[-1]))
        return Batch(coords, targets)

    @staticmethod
    def loss(predictions: Tensor, targets: Tensor) -> Tensor:
        """Mean squared error over pixels and channels."""
        return (predictions.float() - targets).square().mean()


class ShapeTrainingData:
    """Pre-sampled SDF points (N, S, 3) and distances (N, S, 1) on `device`, subsampled per step."""

    modality = "shape"

    def __init__(
        self, shapes: list[ShapeInstance], points: Tensor, sdf: Tensor, class_names: list[str], clamp: float
    ) -> None:
        self.shapes = shapes
        self.ids = [shape.id for shape in shapes]
        self.labels = torch.tensor([shape.label for shape in shapes], dtype=torch.int64)
        self.class_names = class_names
        self.points = points
        self.sdf = sdf
        self.clamp = clamp

    def __len__(self) -> int:
        return self.points.shape[0]

    def check_stage(self, index: int, stage: StageConfig) -> None:
        """Shape stages were checked against `sdf_samples` with the config."""

    def point_selection(self, stage: StageConfig, batch_size: int, generator: torch.Generator) -> Tensor:
        """Random sample indices (batch_size, points), with replacement (cheap, and S >> points)."""
        return torch.randint(self.points.shape[1], (batch_size, stage.points), generator=generator)

    def batch(self, stage: StageConfig, indices: Tensor, selection: Tensor | None) -> Batch:
        coords = self.points[indices[:, None], selection]
        targets = self.sdf[indices[:, None], selection]
        return Batch(coords, targets)

    def loss(self, predictions: Tensor, targets: Tensor) -> Tensor:
        """DeepSDF's L1 between distances clamped to [-clamp, clamp], with a gradient wherever it is wrong.

        DeepSDF's |clamp(pred) - clamp(sdf)| has zero gradient when the prediction lies outside the band, even on
        the wrong side of the surface or for a point inside the band; a field whose initial outputs are O(1) (ours
        are) then never learns. Here the prediction is only clamped on the side where the target is saturated too:
        the value and gradient equal DeepSDF's wherever DeepSDF's gradient is non-zero, and stuck points are pulled
        back into the band.
        """
        bound = self.clamp
        predictions = predictions.float()
        predictions = torch.where(targets >= bound, predictions.clamp(max=bound), predictions)
        predictions = torch.where(targets <= -bound, predictions.clamp(min=-bound), predictions)
        return (predictions - targets.clamp(-bound, bound)).abs().mean()


def _sdf_fingerprint(config: FieldTrainingConfig, ids: list[str]) -> str:
    keys = {"data": config.data, "data_options": config.data_options, "samples": config.sdf_samples}
    return json.dumps({**keys, "seed": config.seed, "ids": ids}, sort_keys=True, default=str)


def _draw_sdf_samples(shapes: list[ShapeInstance], count: int, seed: int) -> tuple[Tensor, Tensor]:
    points, sdf = [], []
    for index, shape in enumerate(shapes):
        p, v = shape.sample(count, seed=[seed, index])
        points.append(torch.from_numpy(p))
        sdf.append(torch.from_numpy(v))
    return torch.stack(points), torch.stack(sdf)[..., None]


def load_sdf_cache(path: Path, fingerprint: str) -> tuple[Tensor, Tensor] | None:
    """The cached (points, sdf) if `path` holds samples drawn with the same settings, else None."""
    from safetensors import safe_open

    if not path.is_file():
        return None
    with safe_open(str(path), framework="pt") as handle:
        if (handle.metadata() or {}).get("fingerprint") != fingerprint:
            return None
        return handle.get_tensor("points"), handle.get_tensor("sdf")


def build_training_data(
    config: FieldTrainingConfig, device: torch.device, is_main_process: bool = True
) -> ImageTrainingData | ShapeTrainingData:
    """Load the source and convert it to training tensors on `device`.

    For shapes, the main process draws and caches the SDF samples; call it on the main process first (e.g. inside
    `accelerator.main_process_first()`) so the other processes read the cache.
    """
    dataset = open_data_source(config.data, config.data_options)
    num_instances = min(len(dataset), config.max_instances or len(dataset))
    if config.modality == "image":
        data = ImageTrainingData(dataset, num_instances, device)
    else:
        from safetensors.torch import save_file

        shapes = [dataset[i] for i in range(num_instances)]
        cache = Path(config.output_dir) / SDF_CACHE_NAME
        fingerprint = _sdf_fingerprint(config, [shape.id for shape in shapes])
        cached = load_sdf_cache(cache, fingerprint)
        if cached is None:
            logger.info("drawing %d SDF samples for each of %d shapes", config.sdf_samples, num_instances)
            cached = _draw_sdf_samples(shapes, config.sdf_samples, config.seed)
            if is_main_process:
                cache.parent.mkdir(parents=True, exist_ok=True)
                save_file({"points": cached[0], "sdf": cached[1]}, str(cache), metadata={"fingerprint": fingerprint})
        points, sdf = cached
        class_names = list(dataset.class_names)
        data = ShapeTrainingData(shapes, points.to(device), sdf.to(device), class_names, config.sdf_clamp)
    for index, stage in enumerate(config.stages):
        data.check_stage(index, stage)
    return data


__all__ = ["Batch", "ImageTrainingData", "ShapeTrainingData", "build_training_data"]
