"""`ReproduceConfig` and the budgets of each scale: what `hf-wlora reproduce` trains, encodes and measures.

A scale fixes, per modality, the data, the stage-1 and stage-2 budgets (shared by all six representations), and
the budgets of the studies. `small` reuses the demo's tuned budgets (about 30 minutes on 2 CPU cores for both
modalities); `paper` reads the paper-scale recipes (`recipes/configs/ffhq.yaml`, `shapenet.yaml`: your copies of
FFHQ and ShapeNet, a GPU); `tiny` only checks that every study runs (the test suite).
"""

from __future__ import annotations

import copy
from dataclasses import dataclass, field
from typing import Any

import yaml

from ..checks import check_int, check_output_dir
from ..resources import recipe as shipped_recipe
from ..spec import REPRESENTATIONS
from ..training.config_checks import read_numbers

SCALES = ("tiny", "small", "paper")
MODALITIES = ("2d", "3d")
# HyperDiffusion (`mlp`) with an MLP narrowed to about as many numbers per instance as mlora_asym (the paper's mlp
# has the base field's width, so it stores several times more numbers than the image it fits): it measures whether
# the mlp kinds generate well because they are larger, rather than arguing it.
PARAMETER_MATCHED_MLP = "mlp_matched"
# What `reproduce` can study: the six representations and the parameter-matched mlp.
SYSTEMS = (*REPRESENTATIONS, PARAMETER_MATCHED_MLP)
# The systems of the paper's generation table; "mlp" is HyperDiffusion (whole MLP weights, tensor tokens).
GENERATION_SYSTEMS = ("mlp", PARAMETER_MATCHED_MLP, "lora_asym", "mlora", "mlora_asym")


@dataclass
class StudyBudget:
    """Everything one modality's studies need at one scale.

    Attributes:
        data, data_options: The data source (see `hf_wlora.data.open_data_source`).
        train_field: `FieldTrainingConfig` settings of stage 1 (without data and output_dir).
        encode: `EncodeConfig` settings of stage 2 shared by the six representations (rank, steps, points, ...).
        structure_instances: Instances fitted from two correlated initialisations (the paper averages 30).
        structure_lambdas: The lambdas of the correlated initialisations.
        structure_alphas: Points on the straight line between the two fits where the metric is measured.
        structure_points: Surface points per cloud of the 3-D structure study's Chamfer distances. More than the
            reconstruction protocol's 2,048: the barrier is a small difference of Chamfers along a path, and a
            2,048-point Chamfer scatters from one sample to the next by about as much as the mLoRA kinds' barriers
            (5e-5 on the built-in shapes), one of 32,768 points by 1.4e-5 (benchmarks/RESULTS.md).
        generation: `GeneratorTrainingConfig` settings of stage 3 (without weights and output_dir).
        generation_samples: Instances sampled per system; None: 1.1 x the reference count (the 3-D protocol).
        sampling_steps, guidance_scale: How the generation study samples (class-balanced labels; every step guided:
            guiding only the second half, as the demo does, changed the small scale's 2.1M-parameter generators'
            learned FD by -9% to +28%, mixed, so the study keeps plain guidance; benchmarks/RESULTS.md).
        point_cloud_points: Points per cloud of the 3-D generation metrics (2,048 in the protocol).
        emd_points: Points per cloud for EMD (a random subset of each cloud; None: all of them). EMD costs O(P^3) per
            pair with the exact solver (about 1.3 s per pair of 2,048-point clouds on one CPU core), so the small
            scale measures it on 512 points (on any machine; where a GPU is available the study runs Sinkhorn's EMD
            on it instead of the exact solver, and its figures record which).
        feature_extractor_steps: Training steps of the 2-D data set's learned feature extractor
            (`LearnedImageFeatures.train_on`; the default is its default, `DEFAULT_TRAINING["steps"]`).
        equal_transformer_sizes: Give every system's transformer about as many parameters as `generation["model"]`
            gives mlora_asym's (`stages.matched_transformer_model`): the same settings give the mlp kinds' tensor
            tokens 4-5x more parameters (their per-token projections), so the systems are compared at equal size.
    """

    data: str
    data_options: dict[str, Any]
    train_field: dict[str, Any]
    encode: dict[str, Any]
    structure_instances: int
    structure_lambdas: list[float]
    structure_alphas: int
    generation: dict[str, Any]
    structure_points: int = 32768
    generation_samples: int | None = None
    sampling_steps: int = 50
    guidance_scale: float = 2.0
    point_cloud_points: int = 2048
    emd_points: int | None = None
    feature_extractor_steps: int = 800
    equal_transformer_sizes: bool = True

    @property
    def modality(self) -> str:
        from ..data import data_modality

        return data_modality(self.data)


def _tiny(modality: str) -> StudyBudget:
    if modality == "2d":
        return StudyBudget(
            data="builtin-glyphs",
            data_options={"num_instances": 20, "resolution": 8},
            train_field={
                "model": {"hidden_size": 16, "num_layers": 2, "num_fourier_features": 8, "latent_dim": 8},
                "stages": [{"steps": 8, "batch_size": 10, "resolution": 8}],
                "checkpoint_every": 8,
            },
            encode={"rank": 2, "steps": 4, "batch_size": 20},
            structure_instances=2,
            structure_lambdas=[0.0, 1.0],
            structure_alphas=3,
            generation=_tiny_generation(),
            generation_samples=6,
            sampling_steps=2,
            feature_extractor_steps=10,
        )
    return StudyBudget(
        data="builtin-shapes",
        data_options={"num_instances": 20},
        train_field={
            "model": {"hidden_size": 16, "num_layers": 2, "num_fourier_features": 8, "latent_dim": 8},
            "stages": [{"steps": 8, "batch_size": 10, "points": 256}],
            "sdf_samples": 1024,
            "checkpoint_every": 8,
            "eval_instances": 2,
            "eval_resolution": 16,
            "eval_points": 256,
        },
        encode={"rank": 2, "steps": 4, "batch_size": 20, "points_per_shape": 1024, "mesh_resolution": 16},
        structure_instances=2,
        structure_lambdas=[0.0, 1.0],
        structure_alphas=3,
        structure_points=256,
        generation={**_tiny_generation(), "mesh_resolution": 16},
        generation_samples=6,
        sampling_steps=2,
        point_cloud_points=128,
    )


def _tiny_generation() -> dict[str, Any]:
    return {
        "model": {"hidden_size": 16, "num_layers": 1, "num_heads": 2},
        "steps": 4,
        "batch_size": 8,
        "warmup_steps": 1,
        "checkpoint_every": 4,
        "num_grid_samples": 2,
        "sample_inference_steps": 2,
        "eval_noise_draws": 1,
    }


def _small(modality: str) -> StudyBudget:
    from ..demo import DEMO_SETTINGS

    demo = copy.deepcopy(DEMO_SETTINGS[modality])
    # learning_rate left to each representation's default, as at the paper scale (the demo's suits its generator)
    encode = {key: value for key, value in demo["encode"].items() if key not in ("representation", "learning_rate")}
    # The studies' transformers are 2.1M-parameter ones (hidden 128; the mlp kinds' are narrowed to as many
    # parameters): at this size no system copies its 128 training glyphs, so the FDs compare generation; the demo's
    # 7.9M one copies a quarter of its samples (benchmarks/RESULTS.md, "Chaos, capacity and copies").
    generation = {
        **demo["train"],
        "model": {"hidden_size": 128, "num_layers": 4, "num_heads": 4},
        "steps": 1500,
        "num_grid_samples": 10,
        "checkpoint_every": 500,
        # the training grids guided as the study samples (every step), not as the demo does
        "grid_guidance_scale": 2.0,
        "grid_guidance_interval": (0.0, 1.0),
    }
    common = {
        "data": demo["data"]["data"],
        "data_options": demo["data"]["data_options"],
        "train_field": demo["train_field"],
        "encode": encode,
        "generation": generation,
    }
    if modality == "2d":
        return StudyBudget(
            **common, structure_instances=8, structure_lambdas=[0.0, 0.25, 0.5, 0.75, 1.0], structure_alphas=5
        )
    return StudyBudget(
        **common,
        structure_instances=6,
        structure_lambdas=[0.0, 0.25, 0.5, 0.75, 1.0],
        structure_alphas=5,
        point_cloud_points=2048,
        emd_points=512,
    )


def _paper(modality: str) -> StudyBudget:
    name = "ffhq.yaml" if modality == "2d" else "shapenet.yaml"
    try:
        recipe = shipped_recipe(name)  # recipes/configs/ in a checkout, hf_wlora/recipe_configs/ in a wheel
    except FileNotFoundError as error:
        raise ValueError(f"The paper scale reads the recipe {name}, which this installation lacks: {error}") from error
    document = yaml.safe_load(recipe.read_text())
    train_field = dict(document["train_field"])
    data, data_options = train_field.pop("data"), train_field.pop("data_options", {})
    train_field.pop("output_dir", None)
    from ..encoding import EncodeConfig  # the encode settings go to its constructor: read them as from_dict does

    encode = {
        key: value
        for key, value in read_numbers(EncodeConfig, document["encode"], name).items()
        # learning_rate left to each representation's default (DEFAULT_LEARNING_RATES: 1e-3 mlp, 1e-2 LoRA, 1e-1 mLoRA)
        if key not in ("field", "output_dir", "data", "data_options", "representation", "learning_rate")
    }
    generation = {key: value for key, value in document["train"].items() if key not in ("weights", "output_dir")}
    return StudyBudget(
        data=data,
        data_options=data_options,
        train_field=train_field,
        encode=encode,
        structure_instances=30,
        structure_lambdas=[round(0.1 * step, 1) for step in range(11)],
        structure_alphas=11,
        generation=generation,
    )


@dataclass
class ReproduceConfig:
    """Settings of `hf-wlora reproduce`.

    Args:
        scale: "tiny", "small" or "paper" (see the module docstring).
        output_dir: Where fields, weight data sets, generators, results and `REPORT.md` go. Rerunning into the same
            folder reuses everything already finished (fields, data sets, generators, finished studies).
        modalities: "2d" and/or "3d".
        representations: Which of the six representations, and `mlp_matched` (the mlp narrowed to about as many
            numbers per instance as mlora_asym), to study (all by default).
        data_2d, data_3d: Your data source instead of the scale's (e.g. "image-folder:photos/",
            "mesh-folder:meshes/"); `data_options_2d` / `data_options_3d` are its options.
        image_features: A vision backbone saved locally (a folder, e.g. a CLIP vision tower or DINOv2 saved with
            `save_pretrained`) whose features the 2-D generation study compares (FD, MMD) instead of the offline
            default, pixels (`PixelFeatures`). Changing it between runs of a folder recomputes only those metrics.
        seed: Seed of every stage.
    """

    scale: str = "small"
    output_dir: str = "outputs/reproduce"
    modalities: list[str] = field(default_factory=lambda: list(MODALITIES))
    representations: list[str] = field(default_factory=lambda: list(SYSTEMS))
    data_2d: str | None = None
    data_options_2d: dict[str, Any] | None = None
    data_3d: str | None = None
    data_options_3d: dict[str, Any] | None = None
    image_features: str | None = None
    seed: int = 0

    def __post_init__(self) -> None:
        if self.scale not in SCALES:
            raise ValueError(f"scale must be one of {SCALES}, got {self.scale!r}.")
        unknown = sorted(set(self.modalities) - set(MODALITIES))
        if unknown or not self.modalities:
            raise ValueError(f"modalities must be a non-empty subset of {MODALITIES}, got {self.modalities}.")
        unknown = sorted(set(self.representations) - set(SYSTEMS))
        if unknown or not self.representations:
            raise ValueError(f"representations must be a non-empty subset of {SYSTEMS}, got {unknown}.")
        check_output_dir(self.output_dir)
        check_int(self.seed, "seed", minimum=0)
        for modality in self.modalities:
            self.budget(modality)  # bad data sources and missing recipes fail now, not after hours

    def budget(self, modality: str) -> StudyBudget:
        """The studies' budget for `modality`, with the user's data source if one was named."""
        from ..data import parse_data_source

        budget = {"tiny": _tiny, "small": _small, "paper": _paper}[self.scale](modality)
        data = self.data_2d if modality == "2d" else self.data_3d
        if data is not None:
            parse_data_source(data)
            budget.data = data
            budget.data_options = dict((self.data_options_2d if modality == "2d" else self.data_options_3d) or {})
        expected = "image" if modality == "2d" else "shape"
        if budget.modality != expected:
            raise ValueError(f"The {modality} studies need a {expected} data source, got {budget.data!r}.")
        return budget


__all__ = [
    "GENERATION_SYSTEMS",
    "MODALITIES",
    "PARAMETER_MATCHED_MLP",
    "SCALES",
    "SYSTEMS",
    "ReproduceConfig",
    "StudyBudget",
]
