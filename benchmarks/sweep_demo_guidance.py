"""The demo's trained generator sampled with other classifier-free guidance: legibility against copying.

Reuses a finished `hf-wlora demo` output folder (2-D). For every guidance scale and every guidance interval (the
fractions of the denoising steps that are guided, `WeightSpacePipeline(guidance_interval=...)`), the demo's own
measurement (1.1 x as many class-balanced samples as training glyphs, seed 1: FD on the cached learned features and
on pixels, the copy fraction, nearest-training PSNR, how often the glyph classifier reads a sample as its class, over
all samples and over those that are not copies) and a `samples.png`-style picture (seed 0), written as
`samples-guidance-{scale}-{start}-{end}.png` beside the generator's `pipeline` folder. Nothing is trained. Lower
guidance gives cleaner glyphs, because more of them are copies; `--generator` measures another generator trained
on the same weights (a `sweep_demo_generator.py` variant, for example `generator-sweep/seed-1`).

Run: `OMP_NUM_THREADS=2 python benchmarks/sweep_demo_guidance.py outputs/demo --scales 1.75 2 2.25 2.5
--intervals 0,1 0.5,1`.
"""

from __future__ import annotations

import argparse
import itertools
import json
from pathlib import Path

from hf_wlora import demo
from hf_wlora.data import open_data_source
from hf_wlora.encoding import load_weight_dataset
from hf_wlora.pipelines import WeightSpacePipeline
from hf_wlora.reproduction.report import agreement_cell


def interval(text: str) -> tuple[float, float]:
    """A guidance interval written START,END."""
    start, end = (float(value) for value in text.split(","))
    return start, end


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("demo_dir", type=Path, help="a finished `hf-wlora demo` output folder (2-D)")
    parser.add_argument("--generator", default="generator", help="the generator's folder within demo_dir")
    parser.add_argument("--scales", type=float, nargs="+", default=[1.0, 1.5, 2.0, 3.0, 5.0])
    parser.add_argument("--intervals", type=interval, nargs="+", default=[(0.0, 1.0)], help="START,END fractions")
    args = parser.parse_args()
    generator_dir = args.demo_dir / args.generator
    if not (generator_dir / "pipeline").is_dir():
        raise SystemExit(f"{generator_dir / 'pipeline'} not found: run `hf-wlora demo --output_dir {args.demo_dir}`.")
    settings = demo.DEMO_SETTINGS["2d"]
    pipeline = WeightSpacePipeline.from_pretrained(generator_dir / "pipeline")
    pipeline.set_progress_bar_config(disable=True)
    weights = load_weight_dataset(args.demo_dir / "weights")
    source = open_data_source(settings["data"]["data"], settings["data"]["data_options"])
    print(
        "| guidance | interval | FD, learned | FD, pixels | copies | nearest-training PSNR | read as their class "
        "(lowest class) | the same without copies |"
    )
    print("|---|---|---|---|---|---|---|---|")
    rows = []
    for (start, end), scale in itertools.product(args.intervals, args.scales):
        sampling = {"guidance_scale": scale, "guidance_interval": (start, end)}
        figures = demo._measured_samples(pipeline, weights, source, args.demo_dir, False, sampling)
        picture = generator_dir / f"samples-guidance-{scale:g}-{start:g}-{end:g}.png"
        demo._samples_picture(pipeline, weights, source, settings, picture, sampling)
        memorization, every, new = (
            figures[key] for key in ("memorization", "class_agreement", "class_agreement_without_copies")
        )
        print(
            f"| {scale:g} | {start:g}-{end:g} | {figures['learned_features']['fd']:.0f} | {figures['fd']:.1f} | "
            f"{memorization['copy_fraction']:.0%} | {memorization['nearest_training_psnr_mean']:.1f} dB | "
            f"{agreement_cell(every)} | {agreement_cell(new)} |",
            flush=True,
        )
        rows.append({**sampling, **{key: value for key, value in figures.items() if key != "feature_extractor"}})
    print(json.dumps(rows))


if __name__ == "__main__":
    main()
