"""`hf-wlora demo`: the pipeline on built-in data, end to end, in minutes on a laptop CPU.

Stage 1 trains a base field on the built-in glyphs (2-D) or shapes (3-D) and bakes it; stage 2 encodes every
instance as mlora_asym adapter weights into a weight data set. The demo writes, under its output folder:

- `field_training/field/`: the baked base field (`NeuralFieldModel.from_pretrained`), with its card;
- `weights/`: the weight data set (`load_weight_dataset`), with its card;
- `reconstructions.png`: training instances (top) above their decoded mlora_asym weights (bottom);
- `summary.json` and `summary.md`: the measured figures and wall times of each stage.

(Stage 3, the diffusion transformer over the weights, joins the demo with the generator.)
"""

from __future__ import annotations

import argparse
import json
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

# The demo's budgets, per modality: stage 1 (FieldTrainingConfig keys) and stage 2 (EncodeConfig keys).
DEMO_SETTINGS: dict[str, dict[str, dict[str, Any]]] = {
    "2d": {
        "data": {"data": "builtin-glyphs", "data_options": {"num_instances": 128, "resolution": 32}},
        "train_field": {
            "model": {"hidden_size": 64, "num_layers": 4, "latent_dim": 32},
            "stages": [
                {"steps": 300, "batch_size": 32, "resolution": 16},
                {"steps": 600, "batch_size": 16, "resolution": 32},
            ],
            # the learning rates, schedule, KL weight and EMA tuned for recipes/configs/glyphs.yaml
            "lr_field": 1e-2,
            "lr_codes": 3e-2,
            "lr_schedule": "constant",
            "kl_weight": 1e-5,
            "ema_decay": 0.999,
            "checkpoint_every": 300,
        },
        "encode": {"representation": "mlora_asym", "steps": 300, "points_per_step": 256, "batch_size": 64},
    },
    "3d": {
        "data": {"data": "builtin-shapes", "data_options": {"num_instances": 32}},
        "train_field": {
            "model": {"hidden_size": 64, "num_layers": 4, "latent_dim": 32},
            "stages": [{"steps": 600, "batch_size": 8, "points": 2048}],
            "sdf_samples": 8192,
            # as tuned for recipes/configs/shapes.yaml
            "lr_field": 5e-3,
            "lr_codes": 3e-2,
            "lr_schedule": "constant",
            "kl_weight": 1e-5,
            "ema_decay": 0.999,
            "checkpoint_every": 300,
            "eval_instances": 4,
            "eval_resolution": 48,
        },
        "encode": {
            "representation": "mlora_asym",
            "steps": 150,
            "points_per_step": 2048,
            "points_per_shape": 8192,
            "batch_size": 16,
            "mesh_resolution": 48,
        },
    },
}

# A tiny budget with the same code paths, for the test suite (`--quick`).
QUICK_OVERRIDES: dict[str, dict[str, Any]] = {
    "data_options": {"num_instances": 6},
    "train_field": {"stage_steps": 8},
    "encode": {"steps": 5},
}


@dataclass
class DemoResult:
    output_dir: Path
    summary: dict[str, Any] = field(default_factory=dict)


def _settings(modality: str, quick: bool) -> dict[str, dict[str, Any]]:
    if modality not in DEMO_SETTINGS:
        raise ValueError(f"modality must be one of {sorted(DEMO_SETTINGS)}, got {modality!r}.")
    settings = json.loads(json.dumps(DEMO_SETTINGS[modality]))  # a deep copy
    if quick:
        settings["data"]["data_options"].update(QUICK_OVERRIDES["data_options"])
        for stage in settings["train_field"]["stages"]:
            stage["steps"] = QUICK_OVERRIDES["train_field"]["stage_steps"]
        settings["train_field"]["checkpoint_every"] = QUICK_OVERRIDES["train_field"]["stage_steps"]
        settings["encode"].update(QUICK_OVERRIDES["encode"])
    return settings


def _reconstruction_picture(weights: Any, field_dir: Path, settings: dict[str, Any], path: Path) -> None:
    """Training instances above their decoded weights: images for 2-D, mesh renderings for 3-D."""
    from .data import open_data_source
    from .encoding import representation_from_spec
    from .fields import NeuralFieldModel, image_grid, render_images

    count = min(8, len(weights))
    representation = representation_from_spec(weights.spec, NeuralFieldModel.from_pretrained(field_dir))
    factors = weights.stacked_factors(list(range(count)))
    source = open_data_source(settings["data"]["data"], settings["data"]["data_options"])
    if representation.modality == "image":
        originals = torch.stack([torch.as_tensor(source[index].image) for index in range(count)])
        decoded = render_images(representation.field_function(factors), originals.shape[1])
        image_grid([originals, decoded], scale=4).save(path)
        return
    from .fields import extract_meshes, sdf_grid
    from .fields.mesh_rendering import render_meshes

    resolution = settings["encode"].get("mesh_resolution", 64)
    truth = [source[index].sdf for index in range(count)]
    true_meshes = extract_meshes(sdf_grid(lambda coords: _stack_sdfs(truth, coords), resolution), allow_failures=True)
    decoded_meshes = extract_meshes(sdf_grid(representation.field_function(factors), resolution), allow_failures=True)
    image_grid([render_meshes(true_meshes), render_meshes(decoded_meshes)]).save(path)


def _stack_sdfs(sdfs: list[Any], coords: torch.Tensor) -> torch.Tensor:
    points = coords.numpy()
    return torch.stack([torch.as_tensor(sdf(points), dtype=torch.float32) for sdf in sdfs]).unsqueeze(-1)


def run_demo(output_dir: str | Path = "outputs/demo", modality: str = "2d", quick: bool = False) -> DemoResult:
    """Run stages 1 and 2 on built-in data and write the picture and summary; see the module docstring."""
    from .encoding import EncodeConfig, encode, load_weight_dataset
    from .fields.training import FieldTrainingConfig, train_field

    settings = _settings(modality, quick)
    output_dir = Path(output_dir)
    summary: dict[str, Any] = {"modality": modality, "quick": quick, "settings": settings}

    start = time.perf_counter()
    field_config = FieldTrainingConfig.from_dict(
        {**settings["data"], **settings["train_field"], "output_dir": str(output_dir / "field_training")}
    )
    field_result = train_field(field_config)
    summary["stage1"] = {"metrics": field_result.metrics, "seconds": time.perf_counter() - start}

    start = time.perf_counter()
    encode_config = EncodeConfig(
        field=str(field_result.field_dir),
        output_dir=str(output_dir / "weights"),
        **settings["data"],
        **settings["encode"],
    )
    encode_result = encode(encode_config)
    summary["stage2"] = {
        "representation": encode_config.representation,
        "score": encode_result.score_name,
        "figures": encode_result.figures,
        "seconds": time.perf_counter() - start,
    }

    weights = load_weight_dataset(encode_result.output_dir)
    _reconstruction_picture(weights, field_result.field_dir, settings, output_dir / "reconstructions.png")
    summary["total_seconds"] = summary["stage1"]["seconds"] + summary["stage2"]["seconds"]
    (output_dir / "summary.json").write_text(json.dumps(summary, indent=2) + "\n")
    (output_dir / "summary.md").write_text(_summary_markdown(summary))
    return DemoResult(output_dir, summary)


def _summary_markdown(summary: dict[str, Any]) -> str:
    stage1, stage2 = summary["stage1"], summary["stage2"]
    figures = stage2["figures"]
    lines = [
        f"# hf_wlora demo ({summary['modality']})",
        "",
        "| stage | result | wall time |",
        "|---|---|---|",
        f"| 1. base field | {_field_metric(stage1['metrics'])} | {stage1['seconds']:.0f} s |",
        f"| 2. encode ({stage2['representation']}, {figures.get('num_instances', 0)} instances) | "
        f"{stage2['score']} mean {figures.get('score_mean', float('nan')):.4g}, median "
        f"{figures.get('score_median', float('nan')):.4g} | {stage2['seconds']:.0f} s |",
        "",
        "`reconstructions.png`: training instances (top) and their decoded weights (bottom).",
        "",
    ]
    return "\n".join(lines)


def _field_metric(metrics: dict[str, Any]) -> str:
    for name in ("psnr", "chamfer"):
        if name in metrics:
            return f"{name} {metrics[name]:.4g}"
    return json.dumps(metrics)


def add_demo_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--output_dir", default="outputs/demo", help="where the demo writes (default outputs/demo)")
    parser.add_argument("--modality", choices=sorted(DEMO_SETTINGS), default="2d", help="2d glyphs or 3d shapes")
    parser.add_argument("--quick", action="store_true", help="a tiny budget, to check the installation in seconds")


def run_demo_command(args: argparse.Namespace) -> int:
    result = run_demo(args.output_dir, args.modality, args.quick)
    print((result.output_dir / "summary.md").read_text())
    print(f"outputs in {result.output_dir}")
    return 0
