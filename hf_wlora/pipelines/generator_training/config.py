"""`GeneratorTrainingConfig`: every setting of a stage-3 run (the diffusion transformer over weights).

The `train` section of a recipe YAML. Unknown keys, wrong types and out-of-range values raise a `ValueError` naming
the key before any data is loaded.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from typing import Any, ClassVar

from ...checks import check_guidance_interval, check_number, is_int, is_number
from ...training.config_checks import RecipeSection, check_positive_int, check_run_settings

SECTION = "train"  # this stage's section of a recipe YAML
PREDICTION_TYPES = ("epsilon", "sample", "v_prediction")
BETA_SCHEDULES = ("linear", "scaled_linear", "squaredcos_cap_v2")
# WeightSpaceDiT options a recipe may set under `model` (the spec, classes and encoding come from the data)
MODEL_OPTIONS = (
    "tokenization",
    "chunk_size",
    "hidden_size",
    "num_layers",
    "num_layer_blocks",
    "num_heads",
    "mlp_ratio",
    "dropout",
)


@dataclass
class GeneratorTrainingConfig(RecipeSection):
    """Settings of a stage-3 run. See the README for a walk-through.

    Attributes:
        weights: The weight data set: a folder written by `hf_wlora.encode` or a Hub data set id.
        output_dir: Where checkpoints, sample grids and the final pipeline (`pipeline/`) go.
        split: The weight data set's split to train on.
        weights_revision: Hub revision of the weight data set (pin a commit for reproducible runs).
        field: The base field (folder or Hub id); default: the one the weight data set names.
        field_subfolder, field_revision: Where in `field`'s repo the field is (defaults: the data set's record).
        model: `WeightSpaceDiT` options (tokenization, chunk_size, hidden_size, num_layers, num_layer_blocks,
            num_heads, mlp_ratio, dropout).
        conditional: Train a class-conditional model; null: when the weight data set has class names.
        class_dropout_prob: Fraction of labels replaced by "no class" in training (for classifier-free guidance).
        steps: Optimiser steps of the run.
        batch_size: Instances per step over all processes (at most the data set's size; a multiple of the process
            count).
        learning_rate: AdamW learning rate after warm-up.
        weight_decay: AdamW weight decay.
        adam_betas: AdamW's (beta1, beta2).
        warmup_steps: Linear learning-rate warm-up.
        lr_schedule: "constant" or "cosine" (down to `min_lr_ratio` of the rate at the last step).
        min_lr_ratio: The cosine schedule's final fraction of the learning rate.
        max_grad_norm: Gradient clipping (null disables it).
        ema_decay: Decay of the exponential moving average of the weights that is sampled from and exported.
        num_train_timesteps: Diffusion steps of the DDPM noise schedule.
        beta_schedule: "linear", "scaled_linear" or "squaredcos_cap_v2" (cosine).
        prediction_type: What the transformer predicts: "epsilon", "sample" (x0, as HyperDiffusion) or
            "v_prediction".
        checkpoint_every: Save a checkpoint every this many steps (and at the last step of a run).
        keep_checkpoints: How many of the latest checkpoints to keep.
        resume: Continue from the latest checkpoint in output_dir.
        max_steps: Stop after this global step (a later resume continues the same schedule).
        seed: Seed of the model init, the data order and every draw of noise and timesteps.
        log_every: Steps between loss logs (progress bar and trackers).
        log_with: Accelerate trackers (e.g. ["tensorboard"]).
        mixed_precision: "no", "fp16" or "bf16".
        sample_every: Write a grid of samples every this many steps (null: only at the end).
        num_grid_samples: Samples per grid (class-balanced for conditional models).
        sample_inference_steps: Denoising steps of the grids.
        grid_guidance_scale: Classifier-free guidance of the grids of conditional models.
        grid_guidance_interval: The fractions of the grids' denoising steps that are guided, (start, end)
            (`WeightSpacePipeline(guidance_interval=...)`; (0, 1): every step).
        eval_noise_draws: Noise draws per training instance in the final denoising-loss evaluation.
        resolution: Image side of decoded samples (2-D); null: the encoding's resolution, else 64.
        mesh_resolution: SDF grid resolution of decoded samples (3-D).
    """

    weights: str
    output_dir: str = "outputs/generator"
    split: str = "train"
    weights_revision: str | None = None
    field: str | None = None
    field_subfolder: str | None = None
    field_revision: str | None = None
    model: dict[str, Any] = dataclasses.field(default_factory=dict)
    conditional: bool | None = None
    class_dropout_prob: float = 0.1
    steps: int = 5000
    batch_size: int = 64
    learning_rate: float = 1e-3
    weight_decay: float = 0.0
    adam_betas: tuple[float, float] = (0.9, 0.999)
    warmup_steps: int = 100
    lr_schedule: str = "cosine"
    min_lr_ratio: float = 0.1
    max_grad_norm: float | None = 1.0
    ema_decay: float = 0.999
    num_train_timesteps: int = 1000
    beta_schedule: str = "squaredcos_cap_v2"
    prediction_type: str = "sample"
    checkpoint_every: int = 500
    keep_checkpoints: int = 2
    resume: bool = False
    max_steps: int | None = None
    seed: int = 0
    log_every: int = 10
    log_with: list[str] = dataclasses.field(default_factory=list)
    mixed_precision: str = "no"
    sample_every: int | None = None
    num_grid_samples: int = 16
    sample_inference_steps: int = 50
    grid_guidance_scale: float = 1.0
    grid_guidance_interval: tuple[float, float] = (0.0, 1.0)
    eval_noise_draws: int = 4
    resolution: int | None = None
    mesh_resolution: int = 64

    section: ClassVar[str] = SECTION
    run_control: ClassVar[tuple[str, ...]] = (
        "sample_every",
        "num_grid_samples",
        "sample_inference_steps",
        "grid_guidance_scale",
        "grid_guidance_interval",
        "eval_noise_draws",
        "resolution",
        "mesh_resolution",
    )

    def __post_init__(self) -> None:
        if isinstance(self.adam_betas, list):
            self.adam_betas = tuple(self.adam_betas)
        if isinstance(self.grid_guidance_interval, list):  # as YAML reads it
            self.grid_guidance_interval = tuple(self.grid_guidance_interval)
        self.check()

    def check(self) -> None:
        """Raise `ValueError` naming the first bad value."""
        if not isinstance(self.weights, str) or not self.weights:
            raise ValueError(f"weights must name a weight data set (folder or Hub id), got {self.weights!r}.")
        if not isinstance(self.model, dict):
            raise ValueError(f"model must be a mapping of WeightSpaceDiT options, got {self.model!r}.")
        unknown = sorted(set(self.model) - set(MODEL_OPTIONS))
        if unknown:
            raise ValueError(
                f"model: unknown options {unknown}; valid: {', '.join(MODEL_OPTIONS)} (the spec, classes and "
                "encoding settings come from the weight data set)."
            )
        check_run_settings(self)
        for name in ("steps", "batch_size", "num_train_timesteps", "num_grid_samples", "sample_inference_steps"):
            check_positive_int(self, name)
        for name in ("eval_noise_draws", "mesh_resolution"):
            check_positive_int(self, name)
        for name in ("sample_every", "resolution"):
            if getattr(self, name) is not None:
                check_positive_int(self, name)
        if not is_int(self.warmup_steps) or not 0 <= self.warmup_steps < self.steps:
            raise ValueError(f"warmup_steps must be an integer in [0, steps), got {self.warmup_steps!r}.")
        check_number(self.learning_rate, "learning_rate", positive=True)  # finite: inf passes a range check
        if not (is_number(self.weight_decay) and 0 <= self.weight_decay < math.inf):  # NaN fails it too
            raise ValueError(f"weight_decay must be a non-negative number, got {self.weight_decay!r}.")
        if not is_number(self.class_dropout_prob) or not 0 <= self.class_dropout_prob < 1:
            raise ValueError(f"class_dropout_prob must be in [0, 1), got {self.class_dropout_prob!r}.")
        check_number(self.grid_guidance_scale, "grid_guidance_scale")  # NaN would only fail at the first grid
        # the grids would fail after training (an unconditional run's grids are never guided)
        if self.grid_guidance_scale != 1 and self.class_dropout_prob == 0 and self.conditional is not False:
            raise ValueError(
                f"grid_guidance_scale={self.grid_guidance_scale} guides with the unconditional prediction, which "
                "class_dropout_prob=0 never trains: set class_dropout_prob > 0 (e.g. 0.1) or grid_guidance_scale: 1."
            )
        check_guidance_interval(self.grid_guidance_interval, "grid_guidance_interval")
        if self.conditional is not None and not isinstance(self.conditional, bool):
            raise ValueError(f"conditional must be true, false or null, got {self.conditional!r}.")
        if self.prediction_type not in PREDICTION_TYPES:
            raise ValueError(f"prediction_type must be one of {PREDICTION_TYPES}, got {self.prediction_type!r}.")
        if self.beta_schedule not in BETA_SCHEDULES:
            raise ValueError(f"beta_schedule must be one of {BETA_SCHEDULES}, got {self.beta_schedule!r}.")


__all__ = ["GeneratorTrainingConfig"]
