"""The demo's trained generator sampled at several classifier-free guidance scales: legibility against copying.

Reuses a finished `hf-wlora demo` output folder (2-D): for each scale, the demo's own measurement (1.1 x as many
class-balanced samples as training glyphs, seed 1: FD on the cached learned features and on pixels, the copy
fraction, nearest-training PSNR) and its `samples.png` picture (seed 0), written as `samples-guidance-{scale}.png`
in the folder. Nothing is trained. Lower guidance tends to give cleaner glyphs because more of them are copies.

Run: `OMP_NUM_THREADS=2 python benchmarks/sweep_demo_guidance.py outputs/demo [--scales 1 1.5 2 3 5]`.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from hf_wlora import demo
from hf_wlora.data import open_data_source
from hf_wlora.encoding import load_weight_dataset
from hf_wlora.pipelines import WeightSpacePipeline


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("demo_dir", type=Path, help="a finished `hf-wlora demo` output folder (2-D)")
    parser.add_argument("--scales", type=float, nargs="+", default=[1.0, 1.5, 2.0, 3.0, 5.0])
    args = parser.parse_args()
    pipeline_dir = args.demo_dir / "generator" / "pipeline"
    if not pipeline_dir.is_dir():
        raise SystemExit(f"{pipeline_dir} not found: run `hf-wlora demo --output_dir {args.demo_dir}` first.")
    settings = demo.DEMO_SETTINGS["2d"]
    pipeline = WeightSpacePipeline.from_pretrained(pipeline_dir)
    pipeline.set_progress_bar_config(disable=True)
    weights = load_weight_dataset(args.demo_dir / "weights")
    source = open_data_source(settings["data"]["data"], settings["data"]["data_options"])
    print("| guidance | FD, learned | FD, pixels | copies | nearest-training PSNR |")
    print("|---|---|---|---|---|")
    rows = []
    for scale in args.scales:
        figures = demo._measured_samples(pipeline, weights, source, args.demo_dir, False, guidance_scale=scale)
        picture = args.demo_dir / f"samples-guidance-{scale:g}.png"
        demo._samples_picture(pipeline, weights, source, settings, picture, guidance_scale=scale)
        memorization = figures["memorization"]
        print(
            f"| {scale:g} | {figures['learned_features']['fd']:.0f} | {figures['fd']:.1f} | "
            f"{memorization['copy_fraction']:.0%} | {memorization['nearest_training_psnr_mean']:.1f} dB |",
            flush=True,
        )
        rows.append(
            {"guidance_scale": scale, **{key: value for key, value in figures.items() if key != "feature_extractor"}}
        )
    print(json.dumps(rows))


if __name__ == "__main__":
    main()
