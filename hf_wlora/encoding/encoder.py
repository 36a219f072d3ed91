"""Encode a data set into a weight data set: fit every instance's representation on the frozen base field.

Instances are fitted in batches (`fit_instances`) and written as they finish (`WeightDatasetWriter`), so a killed
run resumes where it stopped: instances already written are skipped, and the finished data set equals an
uninterrupted run's. Under `accelerate launch` every process takes every k-th instance and writes its own parts;
the main process finalises the shards once all are done.
"""

from __future__ import annotations

import logging
import os
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

import numpy as np
import torch
import yaml
from tqdm.auto import tqdm

from ..spec import DEFAULT_MASK_RATIO, DEFAULT_MASK_SEED, REPRESENTATIONS
from .fitting import FitSettings, fit_instances
from .representations import (
    DEFAULT_LEARNING_RATES,
    Representation,
    StandaloneMLPRepresentation,
    make_representation,
)

logger = logging.getLogger(__name__)

# Surface points per cloud when scoring a shape's reconstruction (the paper's 3-D protocol uses 2048).
SCORE_POINTS = 2048


@dataclass
class EncodeConfig:
    """Settings of an encoding run (the `encode` section of a recipe YAML).

    Args:
        field: Local folder or Hub id of the base field (baked, or baked here if it is modulated).
        output_dir: Where the weight data set is written.
        data: Data source, as for field training: builtin-glyphs, builtin-shapes, image-folder:PATH,
            hf-images:ID_OR_PATH, mesh-folder:PATH, sdf-samples:PATH.
        data_options: Keyword arguments of the data source (e.g. num_instances, resolution).
        field_subfolder, field_revision: Where in the field's repo or folder the base field is.
        representation: One of mlp, mlp_asym, lora, lora_asym, mlora, mlora_asym.
        rank, alpha, mask_ratio, mask_seed, kappa: The representation's settings (alpha None: the tuner's default;
            kappa None: 1 for the LoRA kinds, `MLP_KAPPA` = 0.03 for the mlp kinds, whose frozen entries are weights
            of the field itself).
        steps, learning_rate, points_per_step: Fitting budget (learning_rate None: the kind's
            `DEFAULT_LEARNING_RATES` entry, 1e-1 for mLoRA, 1e-2 for LoRA, 1e-3 for mlp).
        points_per_shape: SDF samples drawn per shape (seeded by the instance's index).
        batch_size: Instances fitted together (it changes speed and memory, never the result).
        shard_size: Rows per final parquet shard (None: about 500 MB).
        mesh_resolution: Grid resolution of the meshes that score shapes (Chamfer).
        seed: Seed of the initial factors and the per-step point subsets.
        split: Split name of the weight data set.
    """

    field: str
    output_dir: str
    data: str = "builtin-glyphs"
    data_options: dict[str, Any] = field(default_factory=dict)
    field_subfolder: str | None = None
    field_revision: str | None = None
    representation: str = "mlora_asym"
    rank: int = 4
    alpha: float | None = None
    mask_ratio: float = DEFAULT_MASK_RATIO
    mask_seed: int = DEFAULT_MASK_SEED
    kappa: float | None = None
    steps: int = 300
    learning_rate: float | None = None
    points_per_step: int | None = None
    points_per_shape: int = 8192
    batch_size: int = 64
    shard_size: int | None = None
    mesh_resolution: int = 64
    seed: int = 0
    split: str = "train"

    def __post_init__(self) -> None:
        if self.representation not in REPRESENTATIONS:
            raise ValueError(f"representation must be one of {REPRESENTATIONS}, got {self.representation!r}.")
        for name in ("batch_size", "points_per_shape", "mesh_resolution", "rank"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}.")
        if self.learning_rate is None:
            self.learning_rate = DEFAULT_LEARNING_RATES[self.representation]
        self.fit_settings()  # validates steps, learning rate and points per step now, not after loading data

    def fit_settings(self) -> FitSettings:
        return FitSettings(
            steps=self.steps,
            learning_rate=self.learning_rate,
            points_per_step=self.points_per_step,
            seed=self.seed,
        )

    def result_settings(self) -> dict[str, Any]:
        """The settings that determine the fitted weights (batch size and sharding do not), stored with the data."""
        skip = {"field", "output_dir", "batch_size", "shard_size", "split"}
        return {name: value for name, value in asdict(self).items() if name not in skip}

    @classmethod
    def from_dict(cls, data: dict[str, Any], **overrides: Any) -> EncodeConfig:
        merged = {**data, **{key: value for key, value in overrides.items() if value is not None}}
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(merged) - known)
        if unknown:
            raise ValueError(f"Unknown encode settings {unknown}; valid settings: {sorted(known)}.")
        return cls(**merged)

    @classmethod
    def from_yaml(cls, path: str | Path, section: str = "encode", **overrides: Any) -> EncodeConfig:
        """Read the `encode` section of a recipe YAML (or the whole file if it has no such section)."""
        document = yaml.safe_load(Path(path).read_text()) or {}
        return cls.from_dict(document.get(section, document), **overrides)


@dataclass
class EncodeResult:
    """Where the weight data set is, and its reconstruction figures (finite scores only)."""

    output_dir: Path
    score_name: str
    figures: dict[str, float]


def load_base_field(config: EncodeConfig) -> tuple[Any, str | None]:
    """The baked base field named by the config, and the commit hash it was read at (None for local folders)."""
    from ..fields import NeuralFieldModel

    field_model = NeuralFieldModel.from_pretrained(
        config.field, subfolder=config.field_subfolder or "", revision=config.field_revision
    )
    if not field_model.config.baked:
        logger.warning(
            "The field %s is modulated; baking its mean latent into plain layers for encoding.", config.field
        )
        field_model = field_model.bake()
    revision = None
    if not Path(config.field).exists():
        from huggingface_hub import HfApi

        revision = HfApi().model_info(config.field, revision=config.field_revision).sha
    return field_model.requires_grad_(False).eval(), revision


def instance_targets(
    instances: list[Any], modality: str, points_per_shape: int, indices: list[int]
) -> tuple[torch.Tensor, torch.Tensor]:
    """Coordinates and targets of a batch: shared pixel centres (P, 2) for images, samples (B, P, 3) for shapes.

    Each shape draws `points_per_shape` SDF samples seeded by its index in `indices`.
    """
    from ..data import sample_sdf
    from ..fields import image_coordinates

    if modality == "image":
        images = np.stack([instance.image for instance in instances])
        if len({image.shape for image in images}) > 1:
            raise ValueError("Images of one data set must share one size; pass data_options resolution=...")
        height, width = images.shape[1:3]
        return image_coordinates(height, width), torch.from_numpy(images).reshape(len(instances), -1, 3).float()
    samples = [sample_sdf(shape, points_per_shape, seed=index) for shape, index in zip(instances, indices, strict=True)]
    coords = torch.stack([torch.as_tensor(points, dtype=torch.float32) for points, _ in samples])
    values = torch.stack([torch.as_tensor(sdf, dtype=torch.float32).reshape(-1, 1) for _, sdf in samples])
    return coords, values


def reconstruction_scores(
    representation: Representation,
    factors: dict[str, torch.Tensor],
    instances: list[Any],
    coords: torch.Tensor,
    targets: torch.Tensor,
    config: EncodeConfig,
) -> np.ndarray:
    """PSNR of each reconstructed image; Chamfer distance of each reconstructed shape's mesh (NaN if none)."""
    from ..metrics import chamfer_distance, psnr

    if representation.modality == "image":
        with torch.no_grad():
            values = representation.forward(factors, coords.expand(len(instances), *coords.shape))
        return psnr(values, targets).numpy()
    import trimesh

    from ..data import sample_surface
    from ..fields import extract_meshes, sdf_grid

    grids = sdf_grid(representation.field_function(factors), config.mesh_resolution)
    meshes = extract_meshes(grids, allow_failures=True)  # a failed mesh scores NaN, and the log names it
    scores = np.full(len(instances), np.nan)
    for position, (mesh, shape) in enumerate(zip(meshes, instances, strict=True)):
        if mesh is not None:
            reconstructed, _ = trimesh.sample.sample_surface(mesh, SCORE_POINTS, seed=config.seed)
            scores[position] = chamfer_distance(reconstructed, sample_surface(shape, SCORE_POINTS, seed=config.seed))
    return scores


def configured_representation(config: EncodeConfig, base_field: Any, source: Any) -> Representation:
    """The representation `config` fits, starting where its encoding starts every instance.

    The adapter kinds start from seeded factors; the mlp kinds (HyperDiffusion) from a fit of the source's first
    instance, computed here (every process of a distributed run computes the same one).
    """
    representation = make_representation(
        config.representation,
        base_field,
        rank=config.rank,
        seed=config.seed,
        mask_ratio=config.mask_ratio,
        mask_seed=config.mask_seed,
        **({"kappa": config.kappa} if config.kappa is not None else {}),
        **({"alpha": config.alpha} if config.alpha is not None and not config.representation.startswith("mlp") else {}),
    )
    if isinstance(representation, StandaloneMLPRepresentation):
        coords, targets = instance_targets([source[0]], representation.modality, config.points_per_shape, [0])
        first = fit_instances(representation, coords, targets, config.fit_settings())
        representation.set_initial_factors({name: value[0] for name, value in first.factors.items()})
    return representation


def _process_grid() -> tuple[int, int, Any]:
    from accelerate import PartialState
    from accelerate.utils import parse_flag_from_env

    # Accelerator reads ACCELERATE_USE_CPU itself; PartialState only takes it as an argument.
    state = PartialState(cpu=parse_flag_from_env("ACCELERATE_USE_CPU"))
    expected = int(os.environ.get("WORLD_SIZE", state.num_processes))
    if expected != state.num_processes:
        raise RuntimeError(
            f"The launcher asked for {expected} processes but accelerate sees {state.num_processes}; on a CPU-only "
            "machine use `ACCELERATE_USE_CPU=1 accelerate launch --multi_gpu --num_processes N ...`."
        )
    return state.process_index, state.num_processes, state


def encode(config: EncodeConfig, progress: bool = True) -> EncodeResult:
    """Fit every instance of the data source and write the weight data set to `config.output_dir`."""
    from ..data import open_data_source
    from .info import INFO_FILE_NAME, WeightDatasetInfo
    from .writer import WeightDatasetWriter

    process_index, num_processes, state = _process_grid()
    base_field, revision = load_base_field(config)
    source = open_data_source(config.data, config.data_options)
    representation = configured_representation(config, base_field, source)
    modality = representation.modality
    info = WeightDatasetInfo(
        spec=representation.spec,
        modality=modality,
        base_field=config.field,
        base_field_revision=revision,
        base_field_subfolder=config.field_subfolder,
        class_names=list(source.class_names) if getattr(source, "class_names", None) else None,
        encoding=config.result_settings(),
    )
    writer = WeightDatasetWriter(
        config.output_dir, info, split=config.split, shard_size=config.shard_size, process_index=process_index
    )
    done = writer.done_ids()
    todo = [index for index in range(process_index, len(source), num_processes) if source[index].id not in done]
    batches = [todo[start : start + config.batch_size] for start in range(0, len(todo), config.batch_size)]
    bar = tqdm(batches, desc=f"encoding {representation.name}", disable=not (progress and state.is_main_process))
    for batch in bar:
        instances = [source[index] for index in batch]
        coords, targets = instance_targets(instances, modality, config.points_per_shape, batch)
        result = fit_instances(representation, coords, targets, config.fit_settings())
        scores = reconstruction_scores(representation, result.factors, instances, coords, targets, config)
        labels = [instance.label for instance in instances]
        writer.write([instance.id for instance in instances], labels, result.factors, scores, indices=batch)
        bar.set_postfix({info.score_name: f"{np.nanmean(scores):.3g}"})
    state.wait_for_everyone()
    if state.is_main_process:
        writer.finalize()
    state.wait_for_everyone()
    written = WeightDatasetInfo.load(Path(config.output_dir) / INFO_FILE_NAME)
    return EncodeResult(Path(config.output_dir), written.score_name or "", written.splits.get(config.split, {}))
