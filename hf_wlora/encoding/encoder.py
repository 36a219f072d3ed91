"""Encode a data set into a weight data set: fit every instance's representation on the frozen base field.

Instances are fitted in batches (`fit_instances`) and written as they finish (`WeightDatasetWriter`), so a killed
run resumes where it stopped: instances already written are skipped, and the finished data set equals an
uninterrupted run's. A resume must read the same base field (its weights' hash is one of the run's settings) and the
same data (every written instance's content hash is checked against the source).

Under `accelerate launch` every process takes every k-th instance and writes its own parts; the main process
finalises the shards once all are done.
"""

from __future__ import annotations

import logging
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
from tqdm.auto import tqdm

from ..checks import check_device, check_int, check_number, check_output_dir
from ..representations import (
    DEFAULT_LEARNING_RATES,
    POINTS_PER_SHAPE,
    FitSettings,
    Representation,
    StandaloneMLPRepresentation,
    check_field_modality,
    fit_instances,
    instance_targets,
    load_base_field,
    make_representation,
    reconstruction_scores,
)
from ..spec import DEFAULT_MASK_RATIO, DEFAULT_MASK_SEED, REPRESENTATIONS
from ..training.config_checks import RecipeSection
from .fingerprints import instance_fingerprint, module_fingerprint

logger = logging.getLogger(__name__)


@dataclass
class EncodeConfig(RecipeSection):
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
        target_modules: The base field's layers the LoRA kinds adapt (None: `adapter_target_modules()`, the Fourier
            input projection and every trunk layer); PEFT names, suffixes or a regex.
        rank_pattern: Per-layer ranks of the LoRA kinds that override `rank`, keyed by layer name or regex (as in
            PEFT), e.g. {"head.linear": 3} to adapt the 3-wide head beside rank-4 trunk layers.
        mlp_hidden_size: Width of the mlp kinds' standalone field (None: the base field's), to compare HyperDiffusion
            at about as many numbers per instance as an adapter kind.
        steps, learning_rate, points_per_step: Fitting budget (learning_rate None: the kind's
            `DEFAULT_LEARNING_RATES` entry, 1e-1 for mLoRA, 1e-2 for LoRA, 1e-3 for mlp).
        lr_schedule: "constant", or "cosine" (decay to zero over the steps).
        weight_decay: Decoupled decay of the factors towards their starting values (`FitSettings.weight_decay`).
        points_per_shape: SDF samples drawn per shape (seeded by the instance's index).
        batch_size: Instances fitted together (it changes speed and memory, never the result).
        device: Where the fits run: None (the default) uses the process's accelerator, i.e. each process's GPU under
            `accelerate launch` and the CPU without one; or a torch device name such as "cpu" or "cuda:1". Like the
            batch size it changes speed, not the settings of the weights (a resume may use another device).
        shard_size: Rows per final parquet shard (None: about 500 MB).
        mesh_resolution: Grid resolution of the meshes that score shapes (Chamfer).
        seed: Seed of the initial factors and the per-step point subsets.
        split: Split name of the weight data set.
    """

    section: ClassVar[str] = "encode"

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
    target_modules: list[str] | str | None = None
    rank_pattern: dict[str, int] | None = None
    mlp_hidden_size: int | None = None
    steps: int = 300
    learning_rate: float | None = None
    points_per_step: int | None = None
    lr_schedule: str = "constant"
    weight_decay: float = 0.0
    points_per_shape: int = POINTS_PER_SHAPE
    batch_size: int = 64
    device: str | None = None
    shard_size: int | None = None
    mesh_resolution: int = 64
    seed: int = 0
    split: str = "train"

    def __post_init__(self) -> None:
        if self.representation not in REPRESENTATIONS:
            raise ValueError(f"representation must be one of {REPRESENTATIONS}, got {self.representation!r}.")
        check_output_dir(self.output_dir)
        for name in ("batch_size", "points_per_shape", "mesh_resolution", "rank", "steps"):
            check_int(getattr(self, name), name, minimum=1)
        for name in ("points_per_step", "shard_size", "mlp_hidden_size"):
            if getattr(self, name) is not None:
                check_int(getattr(self, name), name, minimum=1)
        for name in ("seed", "mask_seed"):
            check_int(getattr(self, name), name, minimum=0)
        for name in ("learning_rate", "alpha", "kappa"):
            if getattr(self, name) is not None:
                check_number(getattr(self, name), name, positive=True)
        check_number(self.mask_ratio, "mask_ratio", fraction=True)
        self.device = check_device(self.device)
        if check_number(self.weight_decay, "weight_decay") < 0:
            raise ValueError(f"weight_decay must be >= 0 (0 turns it off), got {self.weight_decay}.")
        is_mlp = self.representation.startswith("mlp")
        if self.mlp_hidden_size is not None and not is_mlp:
            raise ValueError(f"mlp_hidden_size sets the mlp kinds' width; {self.representation} adapts the field.")
        if self.target_modules is not None and is_mlp:
            raise ValueError(f"target_modules chooses the layers a LoRA adapts; {self.representation} trains them all.")
        if self.rank_pattern is not None:
            if is_mlp:
                raise ValueError(f"rank_pattern sets a LoRA's per-layer ranks; {self.representation} has no rank.")
            if not isinstance(self.rank_pattern, dict):
                raise ValueError(f"rank_pattern must map layer names to ranks, got {self.rank_pattern!r}.")
            for layer, layer_rank in self.rank_pattern.items():
                check_int(layer_rank, f"rank_pattern[{layer!r}]", minimum=1)
        if self.learning_rate is None:
            self.learning_rate = DEFAULT_LEARNING_RATES[self.representation]
        self.fit_settings()  # validates steps, learning rate and points per step now, not after loading data

    def fit_settings(self) -> FitSettings:
        return FitSettings(
            steps=self.steps,
            learning_rate=self.learning_rate,
            points_per_step=self.points_per_step,
            seed=self.seed,
            lr_schedule=self.lr_schedule,
            weight_decay=self.weight_decay,
        )

    def result_settings(self) -> dict[str, Any]:
        """The settings that determine the fitted weights (batch size and sharding do not), stored with the data."""
        skip = {"field", "output_dir", "batch_size", "device", "shard_size", "split"}
        return {name: value for name, value in asdict(self).items() if name not in skip}

    def build_representation(self, base_field: Any, source: Any, device: Any = None) -> Representation:
        """The representation these settings fit on `base_field`, starting where the encoding starts every instance,
        computing on `device` (default: this config's `device`, else the CPU).

        The adapter kinds start from seeded factors; the mlp kinds (HyperDiffusion) from a fit of the source's first
        instance, computed here (every process of a distributed run computes the same one).
        """
        representation = make_representation(
            self.representation,
            base_field,
            rank=self.rank,
            seed=self.seed,
            mask_ratio=self.mask_ratio,
            mask_seed=self.mask_seed,
            **({"kappa": self.kappa} if self.kappa is not None else {}),
            **({"alpha": self.alpha} if self.alpha is not None and not self.representation.startswith("mlp") else {}),
            **({"target_modules": self.target_modules} if self.target_modules is not None else {}),
            **({"rank_pattern": self.rank_pattern} if self.rank_pattern is not None else {}),
            **({"hidden_size": self.mlp_hidden_size} if self.mlp_hidden_size is not None else {}),
        ).to(device or self.device or "cpu")
        if isinstance(representation, StandaloneMLPRepresentation):
            coords, targets = instance_targets([source[0]], representation.modality, self.points_per_shape, [0])
            first = fit_instances(representation, coords, targets, self.fit_settings())
            representation.set_initial_factors({name: value[0] for name, value in first.factors.items()})
        return representation


@dataclass
class EncodeResult:
    """Where the weight data set is, and its reconstruction figures (finite scores only)."""

    output_dir: Path
    score_name: str
    figures: dict[str, float]


def _field_commit(config: EncodeConfig) -> str | None:
    """The commit of the base field's Hub repo that the encoding reads (None for a local folder), for the record:
    asked of the Hub, or offline (`HF_HUB_OFFLINE=1`, a field already in the cache) read off the cached snapshot the
    field was loaded from, whose folder is named by its commit."""
    if Path(config.field).exists():
        return None
    from huggingface_hub import HfApi, is_offline_mode, try_to_load_from_cache

    if not is_offline_mode():
        return HfApi().model_info(config.field, revision=config.field_revision).sha
    config_file = "/".join(filter(None, [config.field_subfolder, "config.json"]))
    cached = Path(str(try_to_load_from_cache(config.field, config_file, revision=config.field_revision)))
    return cached.parts[cached.parts.index("snapshots") + 1] if "snapshots" in cached.parts else None


def _process_grid() -> Any:
    """Accelerate's view of the processes of this run (one, or those of `accelerate launch`), checked."""
    from accelerate import PartialState
    from accelerate.utils import parse_flag_from_env

    from ..training.distributed import check_world_size

    # Accelerator reads ACCELERATE_USE_CPU itself; PartialState only takes it as an argument.
    state = PartialState(cpu=parse_flag_from_env("ACCELERATE_USE_CPU"))
    check_world_size(state)
    return state


def _check_source_unchanged(committed: dict[int, tuple[str, str | None]], source: Any, progress_dir: Path) -> None:
    """Refuse to resume when an instance already encoded is no longer at its place in the source, or has changed.

    Mixing rows fitted to two versions of the data would give a data set that matches neither; naming the instances
    lets the user restore them.
    """
    moved, changed = [], []
    for index, (instance_id, fingerprint) in sorted(committed.items()):
        instance = source[index] if index < len(source) else None
        if instance is None or instance.id != instance_id:
            moved.append(instance_id)
        elif fingerprint is not None and instance_fingerprint(instance) != fingerprint:
            changed.append(instance_id)
    problems = []
    if moved:
        problems.append(
            f"{len(moved)} encoded instances are no longer at their place in the source (deleted, renamed or "
            f"reordered files; the first: {moved[:5]})"
        )
    if changed:
        problems.append(f"{len(changed)} encoded instances have other contents now (the first: {changed[:5]})")
    if problems:
        raise ValueError(
            f"The data source changed since this encoding started: {'; '.join(problems)}. Restore the original data, "
            f"encode into another output_dir, or delete {progress_dir} to encode the split afresh."
        )


def encode(config: EncodeConfig, progress: bool = True) -> EncodeResult:
    """Fit every instance of the data source and write the weight data set to `config.output_dir`."""
    from ..data import open_data_source
    from .info import INFO_FILE_NAME, WeightDatasetInfo
    from .writer import PROGRESS_DIR, WeightDatasetWriter

    state = _process_grid()
    process_index, num_processes = state.process_index, state.num_processes
    base_field = load_base_field(config.field, config.field_subfolder, config.field_revision)
    check_field_modality(base_field, config.data, config.field)
    revision = _field_commit(config)
    source = open_data_source(config.data, config.data_options)
    representation = config.build_representation(base_field, source, device=config.device or state.device)
    modality = representation.modality
    info = WeightDatasetInfo(
        spec=representation.spec,
        modality=modality,
        base_field=config.field,
        base_field_revision=revision,
        base_field_subfolder=config.field_subfolder,
        base_field_sha256=module_fingerprint(base_field),
        class_names=list(source.class_names) if getattr(source, "class_names", None) else None,
        encoding=config.result_settings(),
    )
    writer = WeightDatasetWriter(
        config.output_dir,
        info,
        split=config.split,
        shard_size=config.shard_size,
        process_index=process_index,
        num_processes=num_processes,
    )
    state.wait_for_everyone()  # every process has dropped its unreadable parts before any reads the others'
    committed = {index: (instance_id, fingerprint) for instance_id, index, fingerprint in writer.committed()}
    mine = {index: entry for index, entry in committed.items() if index % num_processes == process_index}
    _check_source_unchanged(mine, source, Path(config.output_dir) / PROGRESS_DIR / config.split)  # all, over processes
    todo = [index for index in range(process_index, len(source), num_processes) if index not in committed]
    batches = [todo[start : start + config.batch_size] for start in range(0, len(todo), config.batch_size)]
    bar = tqdm(batches, desc=f"encoding {representation.name}", disable=not (progress and state.is_main_process))
    for batch in bar:
        instances = [source[index] for index in batch]
        coords, targets = instance_targets(instances, modality, config.points_per_shape, batch)
        result = fit_instances(representation, coords, targets, config.fit_settings())
        scores = reconstruction_scores(
            representation, result.factors, instances, coords, targets, config.mesh_resolution, config.seed
        )
        labels = [instance.label for instance in instances]
        ids, fingerprints = [instance.id for instance in instances], [instance_fingerprint(i) for i in instances]
        unscored = [ids[position] for position in np.flatnonzero(~np.isfinite(scores))]
        if unscored:  # the mesh extraction's own log names only a position in the batch
            logger.warning("No %s for instance(s) %s: their score is NaN.", info.score_name, unscored)
        writer.write(ids, labels, result.factors, scores, indices=batch, fingerprints=fingerprints)
        bar.set_postfix({info.score_name: f"{np.nanmean(scores):.3g}"})
    state.wait_for_everyone()
    if state.is_main_process:
        writer.finalize()
    state.wait_for_everyone()
    written = WeightDatasetInfo.load(Path(config.output_dir) / INFO_FILE_NAME)
    return EncodeResult(Path(config.output_dir), written.score_name or "", written.splits.get(config.split, {}))
