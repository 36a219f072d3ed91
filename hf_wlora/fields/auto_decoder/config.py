"""`FieldTrainingConfig`: every setting of a stage-1 run, loadable from YAML, validated up front.

A run is described by the `train_field` section of a recipe YAML (see `recipes/configs/`). Unknown keys, wrong
types and out-of-range values raise a `ValueError` that names the key and the fix before anything is loaded or
trained, so a typo never silently falls back to a default.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field, fields
from typing import TYPE_CHECKING, Any, ClassVar

from ...checks import check_number, is_int, is_number
from ...data import data_modality, parse_data_source
from ...training.config_checks import (
    RecipeSection,
    check_positive_int,
    check_run_settings,
    read_numbers,
    reject_unknown,
)

if TYPE_CHECKING:
    from ..configuration_neural_field import NeuralFieldConfig

MODEL_PRESETS = ("paper",)
SECTION = "train_field"  # this stage's section of a recipe YAML
DEFAULT_LR_FIELD = {"image": 1e-2, "shape": 5e-3}


@dataclass
class StageConfig:
    """One stage of the progressive schedule: `steps` optimiser steps on batches of `batch_size` instances.

    Attributes:
        steps: optimiser steps in this stage.
        batch_size: instances per step (over all processes; each process takes an equal share).
        resolution: images only: side in pixels the stored images are downsampled to (area filter) in this stage.
        points: points per instance per step. Shapes: drawn from the cached SDF samples (required). Images:
            optional random subset of the stage's pixels (default: every pixel).
    """

    steps: int
    batch_size: int
    resolution: int | None = None
    points: int | None = None

    @classmethod
    def from_dict(cls, data: Any, index: int) -> StageConfig:
        where = f"stages[{index}]"
        if not isinstance(data, dict):
            raise ValueError(f"{where} must be a mapping such as {{steps: 500, batch_size: 32, resolution: 16}}.")
        allowed = [f.name for f in fields(cls)]
        reject_unknown(data, allowed, where)
        for required in ("steps", "batch_size"):
            if required not in data:
                raise ValueError(f"{where}: missing {required!r}.")
        stage = cls(**read_numbers(cls, data, where))
        for name in allowed:
            value = getattr(stage, name)
            if (value is not None or name in ("steps", "batch_size")) and (not is_int(value) or value <= 0):
                raise ValueError(f"{where}: {name} must be a positive integer, got {value!r}.")
        return stage


def stage_at(stages: Sequence[StageConfig], step: int) -> tuple[int, int]:
    """(stage index, step within that stage) of global step `step` (0-based).

    Like every draw of a step (`hf_wlora.training.step_draws`), it is recomputed from the global step, so a resumed
    run needs no schedule state.
    """
    start = 0
    for index, stage in enumerate(stages):
        if step < start + stage.steps:
            return index, step - start
        start += stage.steps
    raise ValueError(f"step {step} is past the end of the schedule ({start} steps)")


@dataclass
class FieldTrainingConfig(RecipeSection):
    """Settings of a stage-1 run (the variational auto-decoder). See the README for a walk-through.

    Attributes:
        data: the source: "builtin-glyphs", "builtin-shapes", "image-folder:PATH", "hf-images:ID_OR_PATH",
            "mesh-folder:PATH" or "sdf-samples:PATH".
        stages: the progressive schedule, a list of `StageConfig` (mappings in YAML), run in order.
        data_options: keyword arguments of the source's loader (e.g. num_instances/resolution/seed for the built-in
            sets, resolution for an image folder, split/image_column for hf-images).
        max_instances: use only the first instances of the source.
        output_dir: where checkpoints and the exported field go.
        model: `NeuralFieldConfig` keyword arguments; the modality is set from the data.
        model_preset: "paper" starts from `NeuralFieldConfig.paper_preset` (then `model` overrides it).
        lr_field: Adam learning rate of the field; default 1e-2 for images, 5e-3 for shapes (the best of the
            rates tried on the built-in recipes; shapes lost 2x in Chamfer distance at 1e-2).
        lr_codes: Adam learning rate of the per-instance codes.
        adam_betas: Adam's (beta1, beta2), shared by both groups.
        lr_schedule: "constant" (the default: with the EMA doing the averaging it beat cosine by 4+ dB in short runs),
            or "cosine": both learning rates follow a half cosine over the whole schedule down to `min_lr_ratio`
            times their value.
        min_lr_ratio: the cosine schedule's final fraction of the learning rates.
        kl_weight: beta, the weight of the KL term (summed over latent dimensions, averaged over instances) added to
            the reconstruction loss (per-point mean).
        code_init_std: std of the initial code means mu.
        code_init_logvar: initial log-variance of every code.
        ema_decay: decay of the exponential moving average of the field weights that is evaluated and exported;
            the warm-up min(ema_decay, (1 + t) / (10 + t)) is the smaller one for the first ~9,000 steps at 0.999, so in
            short runs the average spans about the last tenth of the steps.
        max_grad_norm: gradient clipping of all parameters (null disables it).
        sdf_samples: SDF samples per shape, drawn once and cached (shapes only).
        sdf_clamp: distances are clamped to [-sdf_clamp, sdf_clamp] in the L1 loss (DeepSDF).
        checkpoint_every: save a checkpoint every this many steps (and at the last step of a run).
        keep_checkpoints: how many of the latest checkpoints to keep.
        resume: continue from the latest checkpoint in output_dir (start fresh when there is none).
        max_steps: stop after this global step (the schedule is unchanged, so a later resume continues it).
        seed: seed of the model init, the data order and all sampling.
        log_every: steps between loss logs (progress bar postfix and trackers).
        log_with: accelerate trackers to log to (e.g. ["tensorboard"]); empty for none.
        mixed_precision: "no", "fp16" or "bf16" (accelerate's autocast).
        eval_instances: shapes: instances whose Chamfer distance is measured at the end.
        eval_resolution: shapes: SDF grid resolution for marching cubes in the evaluation.
        eval_points: shapes: surface points per mesh for the Chamfer distance.
    """

    data: str
    stages: list[StageConfig]
    data_options: dict[str, Any] = field(default_factory=dict)
    max_instances: int | None = None
    output_dir: str = "outputs/field"
    model: dict[str, Any] = field(default_factory=dict)
    model_preset: str | None = None
    lr_field: float | None = None
    lr_codes: float = 3e-2
    adam_betas: tuple[float, float] = (0.9, 0.99)
    lr_schedule: str = "constant"
    min_lr_ratio: float = 0.05
    kl_weight: float = 1e-5
    code_init_std: float = 0.01
    code_init_logvar: float = -6.0
    ema_decay: float = 0.999
    max_grad_norm: float | None = 1.0
    sdf_samples: int = 32768
    sdf_clamp: float = 0.1
    checkpoint_every: int = 500
    keep_checkpoints: int = 2
    resume: bool = False
    max_steps: int | None = None
    seed: int = 0
    log_every: int = 10
    log_with: list[str] = field(default_factory=list)
    mixed_precision: str = "no"
    eval_instances: int = 8
    eval_resolution: int = 64
    eval_points: int = 10000

    section: ClassVar[str] = SECTION
    run_control: ClassVar[tuple[str, ...]] = ("eval_instances", "eval_resolution", "eval_points")

    def __post_init__(self) -> None:
        self.stages = [
            stage if isinstance(stage, StageConfig) else StageConfig.from_dict(stage, i)
            for i, stage in enumerate(self._list("stages", self.stages))
        ]
        if isinstance(self.adam_betas, list):
            self.adam_betas = tuple(self.adam_betas)
        parse_data_source(self.data)  # before `modality` reads it
        if self.lr_field is None:
            self.lr_field = DEFAULT_LR_FIELD[self.modality]
        self.check()

    @staticmethod
    def _list(name: str, value: Any) -> list[Any]:
        if not isinstance(value, (list, tuple)):
            raise ValueError(f"{name} must be a list, got {value!r}.")
        return list(value)

    @property
    def modality(self) -> str:
        """The field's modality, "image" or "shape", from the data source."""
        return data_modality(self.data)

    def field_config(self) -> NeuralFieldConfig:
        """The `NeuralFieldConfig` of the field this run trains (`model_preset`, then `model`'s overrides)."""
        from ..configuration_neural_field import NeuralFieldConfig

        options = dict(self.model)
        options.pop("modality", None)  # checked against the data by `check`
        if self.model_preset == "paper":
            return NeuralFieldConfig.paper_preset(self.modality, **options)
        return NeuralFieldConfig(modality=self.modality, **options)

    @property
    def total_steps(self) -> int:
        """Steps of the whole schedule (a run stops earlier with `max_steps`)."""
        return sum(stage.steps for stage in self.stages)

    def check(self) -> None:
        """Raise `ValueError` naming the first bad value."""
        parse_data_source(self.data)
        if not self.stages:
            raise ValueError("stages is empty: give at least one stage, e.g. [{steps: 500, batch_size: 32}].")
        for i, stage in enumerate(self.stages):
            self._check_stage(i, stage)
        for name in ("data_options", "model"):
            if not isinstance(getattr(self, name), dict):
                raise ValueError(f"{name} must be a mapping, got {getattr(self, name)!r}.")
        if "modality" in self.model and self.model["modality"] != self.modality:
            raise ValueError(
                f"model.modality={self.model['modality']!r} contradicts the {self.modality} data source {self.data!r}; "
                "drop model.modality (it is set from the data)."
            )
        if self.modality == "image" and self.model.get("out_dim", 3) != 3:
            raise ValueError(
                f"model.out_dim={self.model['out_dim']!r}, but image sources give RGB images; drop model.out_dim."
            )
        if self.model_preset is not None and self.model_preset not in MODEL_PRESETS:
            raise ValueError(f"model_preset must be one of {MODEL_PRESETS} or null, got {self.model_preset!r}.")
        check_run_settings(self)
        for name in ("sdf_samples", "eval_instances", "eval_points"):
            check_positive_int(self, name)
        if self.max_instances is not None:
            check_positive_int(self, "max_instances")
        if not is_int(self.eval_resolution) or self.eval_resolution < 8:
            raise ValueError(f"eval_resolution must be an integer >= 8, got {self.eval_resolution!r}.")
        for name in ("lr_field", "lr_codes", "code_init_std", "sdf_clamp"):
            check_number(getattr(self, name), name, positive=True)
        if not (is_number(self.kl_weight) and 0 <= self.kl_weight < math.inf):  # NaN would train everything to NaN
            raise ValueError(f"kl_weight must be a non-negative number, got {self.kl_weight!r}.")
        check_number(self.code_init_logvar, "code_init_logvar")

    def _check_stage(self, index: int, stage: StageConfig) -> None:
        where = f"stages[{index}]"
        if self.modality == "image":
            if stage.resolution is None:
                raise ValueError(f"{where}: image stages need a resolution (the training image side in pixels).")
            if stage.points is not None and stage.points > stage.resolution**2:
                raise ValueError(
                    f"{where}: points={stage.points} exceeds the {stage.resolution}x{stage.resolution} pixels; "
                    "lower it or drop it to train on every pixel."
                )
        else:
            if stage.resolution is not None:
                raise ValueError(f"{where}: shape stages have no resolution; set points (SDF samples per instance).")
            if stage.points is None:
                raise ValueError(f"{where}: shape stages need points (SDF samples per instance per step).")
            if stage.points > self.sdf_samples:
                raise ValueError(
                    f"{where}: points={stage.points} exceeds sdf_samples={self.sdf_samples} (the cached samples per "
                    "shape); raise sdf_samples or lower points."
                )


__all__ = ["FieldTrainingConfig", "StageConfig", "stage_at"]
