"""`hf-wlora demo`: the pipeline on built-in data, end to end, in minutes on a laptop CPU.

Stage 1 trains a base field on the built-in glyphs (2-D) or shapes (3-D) and bakes it; stage 2 encodes every
instance as mlora_asym adapter weights into a weight data set; stage 3 trains a class-conditional diffusion
transformer on those weights and samples new instances with it. The demo writes, under its output folder:

- `field_training/field/`: the baked base field (`NeuralFieldModel.from_pretrained`), with its card;
- `weights/`: the weight data set (`load_weight_dataset`), with its card;
- `generator/pipeline/`: the `WeightSpacePipeline` (`WeightSpacePipeline.from_pretrained`), with its card;
- `reconstructions.png`: training instances (top) above their decoded mlora_asym weights (bottom);
- `samples.png`: training instances (left) beside generated ones (right), one class per column;
- `feature_extractor/`: (2-D) the classifier trained on the glyphs whose features measure the samples;
- `summary.json` and `summary.md`: the measured figures and wall times of each stage, and (2-D) the generation
  figures of 141 samples: FD on learned features and on pixels, and the fraction of samples that copy a glyph.
"""

from __future__ import annotations

import argparse
import json
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

# Classifier-free guidance of the 2-D demo's samples (its training grids, samples.png and the measured samples).
# Lower scales give cleaner glyphs by copying training ones; guiding only the second half of the steps gave 15-25%
# lower FD and more samples read as their class at the same copy rate, on two trained generators (benchmarks/
# RESULTS.md, "Guidance in the second half of the steps"). The smoother field (Fourier scale 2, below) is learned
# more closely by the transformer, which then copies more at a given scale: 3.25 keeps the copies near the former
# field's at 2.25 (26% and 13% for two training seeds, against 18% and 16%; "A smoother base field").
GUIDANCE_2D = {"guidance_scale": 3.25, "guidance_interval": (0.5, 1.0)}
SAMPLES_PER_CLASS = 2
SAMPLING_STEPS = 50

# The demo's budgets, per modality: stage 1 (FieldTrainingConfig keys), stage 2 (EncodeConfig keys), stage 3
# (GeneratorTrainingConfig keys) and the guidance of the pictured and measured samples (WeightSpacePipeline arguments).
DEMO_SETTINGS: dict[str, dict[str, dict[str, Any]]] = {
    "2d": {
        "data": {"data": "builtin-glyphs", "data_options": {"num_instances": 128, "resolution": 32}},
        "train_field": {
            # Fourier features of std 2 cycles per unit instead of the image default 4: 32-pixel glyphs need no more,
            # the encodings fit better (39.8 against 37.2 dB) and the samples speckle less; with guidance 3.25 every
            # class showed its digit in samples.png for two training seeds (benchmarks/RESULTS.md, "A smoother base
            # field")
            "model": {"hidden_size": 64, "num_layers": 4, "latent_dim": 32, "fourier_scale": 2.0},
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
        # mLoRA's default learning rate, 1e-1: 1e-2 lost whole glyphs (25 dB) and, measured on learned features
        # rather than pixels, its samples were worse too. Every pixel in every step with the rate decayed to zero:
        # the fit is as good as on random pixel subsets at a constant rate (37.2 dB), but two fits of one glyph from
        # nearby starts agree far better (cosine 0.980 against 0.939, barrier 0.70 against 2.63 dB at lambda 0.5),
        # the weight space the generator learns (benchmarks/RESULTS.md, "What makes mLoRA weights generate")
        "encode": {
            "representation": "mlora_asym",
            "steps": 300,
            "points_per_step": None,
            "lr_schedule": "cosine",
            "batch_size": 64,
        },
        # hidden 256 (7.9M parameters): at 2.1M (hidden 128) no sample of several classes shows a digit; larger or
        # longer-trained transformers read better but copy training glyphs (25% here, 94% at hidden 192 trained twice
        # as long), which summary.md reports (benchmarks/RESULTS.md, "Chaos, capacity and copies")
        "train": {
            "model": {"hidden_size": 256, "num_layers": 4, "num_heads": 4},
            "steps": 1500,
            "batch_size": 32,
            "learning_rate": 1e-3,
            "warmup_steps": 100,
            "prediction_type": "sample",
            "checkpoint_every": 1000,
            "num_grid_samples": 20,
            "grid_guidance_scale": GUIDANCE_2D["guidance_scale"],
            "grid_guidance_interval": GUIDANCE_2D["guidance_interval"],
        },
        "sample": dict(GUIDANCE_2D),
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
        "train": {
            "model": {"hidden_size": 128, "num_layers": 4, "num_heads": 4},
            "steps": 2000,
            "batch_size": 32,
            "learning_rate": 1e-3,
            "warmup_steps": 100,
            "prediction_type": "sample",
            "checkpoint_every": 1000,
            "num_grid_samples": 10,
            "grid_guidance_scale": 2.0,
            "mesh_resolution": 48,
        },
        "sample": {"guidance_scale": 2.0, "guidance_interval": (0.0, 1.0)},
    },
}

# A tiny budget with the same code paths, for the test suite (`--quick`).
QUICK_OVERRIDES: dict[str, dict[str, Any]] = {
    "data_options": {"num_instances": 6},
    "train_field": {"stage_steps": 8},
    "encode": {"steps": 5},
    "train": {"steps": 6, "warmup_steps": 1, "checkpoint_every": 6, "num_grid_samples": 2, "sample_inference_steps": 2},
    "feature_extractor_steps": 5,
}
# Samples measured per training instance (the studies' protocol: 1.1 x as many samples as references).
MEASURED_SAMPLES_PER_INSTANCE = 1.1


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
        settings["train"].update(QUICK_OVERRIDES["train"])
    return settings


def _true_tiles(source: Any, indices: list[int | None], modality: str, mesh_resolution: int) -> torch.Tensor:
    """(N, H, W, 3) pictures of data instances: the images, or renderings of the true surfaces; None: a blank tile."""
    present = [index for index in indices if index is not None]
    if modality == "image":
        pictures = [torch.as_tensor(source[index].image) for index in present]
    else:
        from .fields import extract_meshes, render_meshes, sdf_grid

        sdfs = [source[index].sdf for index in present]
        grids = sdf_grid(lambda coords: _stack_sdfs(sdfs, coords), mesh_resolution)
        pictures = list(render_meshes(extract_meshes(grids, allow_failures=True)))
    blank = torch.ones_like(pictures[0])
    found = iter(pictures)
    return torch.stack([blank if index is None else next(found) for index in indices])


def _reconstruction_picture(weights: Any, field_dir: Path, source: Any, settings: dict[str, Any], path: Path) -> None:
    """Training instances above their decoded weights: images for 2-D, mesh renderings for 3-D."""
    from .fields import NeuralFieldModel, image_grid, render_images
    from .representations import representation_from_spec

    count = min(8, len(weights))
    representation = representation_from_spec(weights.spec, NeuralFieldModel.from_pretrained(field_dir))
    factors = weights.stacked_factors(list(range(count)))
    mesh_resolution = settings["encode"].get("mesh_resolution", 64)
    originals = _true_tiles(source, list(range(count)), representation.modality, mesh_resolution)
    if representation.modality == "image":
        decoded = render_images(representation.field_function(factors), originals.shape[1])
        image_grid([originals, decoded], scale=4).save(path)
        return
    from .fields import extract_meshes, render_meshes, sdf_grid

    decoded_meshes = extract_meshes(
        sdf_grid(representation.field_function(factors), mesh_resolution), allow_failures=True
    )
    image_grid([originals, render_meshes(decoded_meshes)]).save(path)


def _stack_sdfs(sdfs: list[Any], coords: torch.Tensor) -> torch.Tensor:
    points = coords.numpy()
    return torch.stack([torch.as_tensor(sdf(points), dtype=torch.float32) for sdf in sdfs]).unsqueeze(-1)


def _samples_picture(
    pipeline: Any,
    weights: Any,
    source: Any,
    settings: dict[str, Any],
    path: Path,
    sampling: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """Training instances (left) beside class-conditional samples (right), a class per column; returns figures.
    `sampling`: the pipeline's guidance arguments (default: the modality's `settings["sample"]`)."""
    from .pipelines import decoded_tiles, picture_scale, side_by_side, tile_grid

    num_classes = len(weights.info.class_names)
    labels = weights.labels.tolist()
    per_class = [[index for index, label in enumerate(labels) if label == c] for c in range(num_classes)]
    examples = [group[row] if row < len(group) else None for row in range(SAMPLES_PER_CLASS) for group in per_class]
    mesh_resolution = settings["train"].get("mesh_resolution", 64)
    training = _true_tiles(source, examples, pipeline.modality, mesh_resolution)
    sample_labels = [c for _ in range(SAMPLES_PER_CLASS) for c in range(num_classes)]
    sampling = settings["sample"] if sampling is None else sampling
    start = time.perf_counter()
    sampled = pipeline(
        len(sample_labels),
        class_labels=sample_labels,
        num_inference_steps=SAMPLING_STEPS,
        generator=torch.Generator().manual_seed(0),
        output_type="weights",
        **sampling,
    ).weights
    figures: dict[str, Any] = {
        "num_samples": len(sample_labels),
        "sampling_seconds": time.perf_counter() - start,
        **sampling,
        "inference_steps": SAMPLING_STEPS,
    }
    if pipeline.modality == "image":
        tiles = decoded_tiles(pipeline, sampled)
    else:
        from .fields import render_meshes

        meshes = pipeline.decode(sampled, "mesh").meshes
        figures["meshes_extracted"] = sum(mesh is not None for mesh in meshes)
        tiles = render_meshes(meshes)
    scale = picture_scale(pipeline)
    side_by_side([tile_grid(training, num_classes, scale), tile_grid(tiles, num_classes, scale)]).save(path)
    return figures


def _measured_samples(
    pipeline: Any, weights: Any, source: Any, output_dir: Path, quick: bool, sampling: dict[str, Any] | None = None
) -> dict[str, Any]:
    """The 2-D generation study's figures of 1.1 x as many class-balanced samples as training glyphs: FD on learned
    features (a classifier trained on the glyphs, cached in `output_dir/feature_extractor`) and on pixels, the
    memorisation figures, and how often that classifier reads a sample as the class it was drawn for (over all
    samples, and over those that do not copy a training glyph). `sampling`: the pipeline's guidance arguments
    (default: the 2-D demo's)."""
    import math

    from .metrics import image_generation_figures, learned_image_features

    sampling = DEMO_SETTINGS["2d"]["sample"] if sampling is None else sampling

    references = torch.stack([torch.as_tensor(source[index].image) for index in range(len(source))])
    labels = weights.labels.tolist()
    # the extractor's default training, as in the studies; --quick only checks the code path
    training = {"steps": QUICK_OVERRIDES["feature_extractor_steps"]} if quick else {}
    extractor = learned_image_features(references, labels, cache_dir=output_dir / "feature_extractor", **training)
    num_classes = len(weights.info.class_names)
    count = math.ceil(MEASURED_SAMPLES_PER_INSTANCE * len(references))
    sample_labels = [index % num_classes for index in range(count)]
    sampled = pipeline(
        count,
        class_labels=sample_labels,
        num_inference_steps=SAMPLING_STEPS,
        generator=torch.Generator().manual_seed(1),
        output_type="weights",
        **sampling,
    ).weights
    images = pipeline.decode(sampled, "pt", resolution=references.shape[1]).images
    figures = image_generation_figures(images, references, learned_features=extractor, labels=sample_labels)
    figures["class_names"] = list(weights.info.class_names)
    return {"num_samples": count, **sampling, "feature_extractor": extractor.config, **figures}


def run_demo(output_dir: str | Path = "outputs/demo", modality: str = "2d", quick: bool = False) -> DemoResult:
    """Run stages 1, 2 and 3 on built-in data and write the pictures and summary; see the module docstring."""
    from .data import open_data_source
    from .encoding import EncodeConfig, encode, load_weight_dataset
    from .fields.auto_decoder import FieldTrainingConfig, train_field
    from .pipelines import WeightSpacePipeline
    from .pipelines.generator_training import GeneratorTrainingConfig, train_generator

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

    start = time.perf_counter()
    generator_config = GeneratorTrainingConfig.from_dict(
        {**settings["train"], "weights": str(encode_result.output_dir), "output_dir": str(output_dir / "generator")}
    )
    generator_result = train_generator(generator_config)
    summary["stage3"] = {"metrics": generator_result.metrics, "seconds": time.perf_counter() - start}

    weights = load_weight_dataset(encode_result.output_dir)
    source = open_data_source(settings["data"]["data"], settings["data"]["data_options"])
    _reconstruction_picture(weights, field_result.field_dir, source, settings, output_dir / "reconstructions.png")
    pipeline = WeightSpacePipeline.from_pretrained(generator_result.pipeline_dir)
    pipeline.set_progress_bar_config(disable=True)
    summary["samples"] = _samples_picture(pipeline, weights, source, settings, output_dir / "samples.png")
    stages = ["stage1", "stage2", "stage3"]
    if pipeline.modality == "image":
        start = time.perf_counter()
        summary["generation"] = _measured_samples(pipeline, weights, source, output_dir, quick, settings["sample"])
        summary["generation"]["seconds"] = time.perf_counter() - start
        stages.append("generation")
    summary["total_seconds"] = sum(summary[stage]["seconds"] for stage in stages)
    (output_dir / "summary.json").write_text(json.dumps(summary, indent=2) + "\n")
    (output_dir / "summary.md").write_text(_summary_markdown(summary))
    return DemoResult(output_dir, summary)


def _summary_markdown(summary: dict[str, Any]) -> str:
    stage1, stage2, stage3, samples = summary["stage1"], summary["stage2"], summary["stage3"], summary["samples"]
    figures, generator = stage2["figures"], stage3["metrics"]
    sample_text = (
        "pictured in samples.png"
        if "meshes_extracted" not in samples
        else f"{samples['meshes_extracted']} of {samples['num_samples']} gave a mesh"
    )
    lines = [
        f"# hf_wlora demo ({summary['modality']})",
        "",
        "| stage | result | wall time |",
        "|---|---|---|",
        f"| 1. base field | {_field_metric(stage1['metrics'])} | {stage1['seconds']:.0f} s |",
        f"| 2. encode ({stage2['representation']}, {figures.get('num_instances', 0)} instances) | "
        f"{stage2['score']} mean {figures.get('score_mean', float('nan')):.4g}, median "
        f"{figures.get('score_median', float('nan')):.4g} | {stage2['seconds']:.0f} s |",
        f"| 3. diffusion transformer ({generator['num_parameters']:,} parameters, {generator['steps']} steps) | "
        f"denoising loss {generator['eval_loss']:.4g} ({generator['prediction_type']} prediction), "
        f"{generator['samples_per_s']:.0f} samples/s | {stage3['seconds']:.0f} s |",
        f"| sampling ({samples['num_samples']} samples, {samples['inference_steps']} steps, "
        f"{_guidance_text(samples)}) | {sample_text} | {samples['sampling_seconds']:.0f} s |",
        "",
        *_generation_lines(summary.get("generation")),
        "`reconstructions.png`: training instances (top) and their decoded weights (bottom).",
        "`samples.png`: training instances (left) and generated instances (right), one class per column.",
        "",
    ]
    return "\n".join(lines)


def _guidance_text(samples: dict[str, Any]) -> str:
    """'guidance 2', or with its interval, 'guidance 2.25 from 50% to 100% of the steps'."""
    start, end = samples.get("guidance_interval", (0.0, 1.0))
    interval = "" if (start, end) == (0.0, 1.0) else f" from {start:.0%} to {end:.0%} of the steps"
    return f"guidance {samples['guidance_scale']:g}{interval}"


def _generation_lines(generation: dict[str, Any] | None) -> list[str]:
    """The measured samples' figures (2-D only)."""
    if generation is None:
        return []
    memorization, extractor = generation["memorization"], generation["feature_extractor"]
    return [
        f"Generation, {generation['num_samples']} class-balanced samples against the training glyphs: "
        f"FD on learned features {generation['learned_features']['fd']:.4g} (a {extractor['kind']} trained on "
        f"the glyphs: {_extractor_quality(extractor)}), FD on pixels {generation['fd']:.4g}; "
        f"{memorization['copy_fraction']:.0%} of the samples copy a training glyph, mean PSNR to the nearest "
        f"training glyph {memorization['nearest_training_psnr_mean']:.3g} dB, "
        f"{memorization['distinct_nearest_training_instances']} distinct nearest glyphs "
        f"({generation['seconds']:.0f} s).",
        "",
        *_agreement_lines(generation),
    ]


def _agreement_lines(generation: dict[str, Any]) -> list[str]:
    """How often the glyph classifier reads a sample as its class (absent for an autoencoder's features)."""
    if generation.get("class_agreement") is None:
        return []
    every, new = generation["class_agreement"], generation["class_agreement_without_copies"]
    names = generation["class_names"]
    without_copies = (
        f"{new['accuracy']:.0%} of the {new['samples']} that are not copies (lowest: class "
        f"{names[new['lowest_class']]}, {new['lowest']:.0%})"
        if new["samples"]
        else "no sample is new"
    )
    flat = (
        f" {every['unreadable']} samples are flatter than every training glyph and count as not read, whatever the "
        "classifier says."
        if every["unreadable"]
        else ""
    )
    return [
        f"The classifier reads {every['accuracy']:.0%} of the samples as the class they were drawn for (lowest: "
        f"class {names[every['lowest_class']]}, {every['lowest']:.0%}); {without_copies}.{flat}",
        "",
    ]


def _extractor_quality(config: dict[str, Any]) -> str:
    if "train_accuracy" in config:
        return f"training accuracy {config['train_accuracy']:.2f}"
    return f"reconstruction MSE {config['train_mse']:.3g}"


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
