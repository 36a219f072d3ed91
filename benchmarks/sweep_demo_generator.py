"""The demo's stage 3 trained again on a finished demo's weights with other settings: legibility against copying.

Reuses a finished `hf-wlora demo` output folder (2-D): its weight data set and its cached learned features. Each
variant trains the demo's transformer (`demo.DEMO_SETTINGS["2d"]["train"]`) with the variant's overrides into
`DEMO_DIR/generator-sweep/VARIANT/` (a rerun reuses a finished one); "demo" is the folder's own generator, not
retrained. Each is measured as the demo measures its samples (class-balanced samples, seed 1: FD on the learned
features and on pixels, the copy fraction, nearest-training PSNR, and how often the glyph classifier reads a sample
as its class, over all samples and over those that are not copies, with the lowest class), and its `samples.png`
(seed 0) is written to its folder. "seed-N" variants show how much the training seed alone moves the figures.

Run: `OMP_NUM_THREADS=2 python benchmarks/sweep_demo_generator.py outputs/demo --variants demo dropout-0.1`.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

from hf_wlora import demo
from hf_wlora.data import open_data_source
from hf_wlora.encoding import load_weight_dataset
from hf_wlora.pipelines import WeightSpacePipeline
from hf_wlora.pipelines.generator_training import GeneratorTrainingConfig, train_generator
from hf_wlora.reproduction.report import agreement_cell

# variant -> overrides of the demo's stage-3 settings ("model" is merged key by key)
VARIANTS: dict[str, dict[str, Any]] = {
    "demo": {},
    "seed-1": {"seed": 1},
    "seed-2": {"seed": 2},
    "dropout-0.1": {"model": {"dropout": 0.1}},
    "dropout-0.2": {"model": {"dropout": 0.2}},
    "dropout-0.3": {"model": {"dropout": 0.3}},
    "dropout-0.1-seed-1": {"model": {"dropout": 0.1}, "seed": 1},
    "dropout-0.2-seed-1": {"model": {"dropout": 0.2}, "seed": 1},
    "dropout-0.3-seed-1": {"model": {"dropout": 0.3}, "seed": 1},
    "dropout-0.4": {"model": {"dropout": 0.4}},
    "class-dropout-0.2": {"class_dropout_prob": 0.2},
    "class-dropout-0.2-seed-1": {"class_dropout_prob": 0.2, "seed": 1},
}


def variant_settings(name: str) -> dict[str, Any]:
    """The demo's stage-3 settings with the variant's overrides."""
    base = demo.DEMO_SETTINGS["2d"]["train"]
    overrides = VARIANTS[name]
    return {**base, **overrides, "model": {**base["model"], **overrides.get("model", {})}}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("demo_dir", type=Path, help="a finished `hf-wlora demo` output folder (2-D)")
    parser.add_argument("--variants", nargs="+", default=["demo"], choices=sorted(VARIANTS))
    args = parser.parse_args()
    weights_dir = args.demo_dir / "weights"
    if not (args.demo_dir / "feature_extractor").is_dir() or not weights_dir.is_dir():
        raise SystemExit(f"{args.demo_dir} is not a finished 2-D demo: run `hf-wlora demo --output_dir DEMO_DIR`.")
    settings = demo.DEMO_SETTINGS["2d"]
    weights = load_weight_dataset(weights_dir)
    source = open_data_source(settings["data"]["data"], settings["data"]["data_options"])
    print(
        "| variant | DiT loss | FD, learned | FD, pixels | copies | nearest-training PSNR | read as their class "
        "(lowest class) | the same without copies | training s |"
    )
    print("|---|---|---|---|---|---|---|---|---|")
    rows = {}
    for name in args.variants:
        folder = args.demo_dir / ("generator" if name == "demo" else f"generator-sweep/{name}")
        if name == "demo":
            metrics = json.loads((folder / "metrics.json").read_text())
        else:
            config = GeneratorTrainingConfig.from_dict(
                {**variant_settings(name), "weights": str(weights_dir), "output_dir": str(folder), "resume": True}
            )
            metrics = train_generator(config).metrics
        pipeline = WeightSpacePipeline.from_pretrained(folder / "pipeline")
        pipeline.set_progress_bar_config(disable=True)
        figures = demo._measured_samples(pipeline, weights, source, args.demo_dir, False)
        demo._samples_picture(pipeline, weights, source, settings, folder / "samples.png")
        memorization, every, new = (
            figures[key] for key in ("memorization", "class_agreement", "class_agreement_without_copies")
        )
        print(
            f"| {name} | {metrics['eval_loss']:.4f} | {figures['learned_features']['fd']:.0f} | "
            f"{figures['fd']:.1f} | {memorization['copy_fraction']:.0%} | "
            f"{memorization['nearest_training_psnr_mean']:.1f} dB | {agreement_cell(every)} | {agreement_cell(new)} | "
            f"{metrics['train_time_s']:.0f} |",
            flush=True,
        )
        rows[name] = {"metrics": metrics, **{k: v for k, v in figures.items() if k != "feature_extractor"}}
    print(json.dumps(rows))


if __name__ == "__main__":
    main()
