"""How chaotic is a fit: two fits of one glyph from nearby starts, against fits of different glyphs.

Encodes the 128 glyphs of `hf-wlora reproduce --scale small` as mlora_asym on that scale's base field with each
given fitting setting, then fits the first 16 glyphs again from a start correlated with the encoding's start by
lambda = 0.5 (the structure study's perturbation of the init's random part). Printed per setting: the mean PSNR,
the mean distance between the two fits of a glyph over the mean distance between fits of two different glyphs
(glyphs 0-15 against 16-31: 0 would be a deterministic encoding, 1 one that forgets which glyph it fitted), their
cosine similarity, and the share of the 128 fits' variance in their top 20 principal components.

Run: `python benchmarks/check_fit_chaos.py --output_dir /tmp/rep_small 0.1,300,256,constant 0.1,300,all,cosine`
(each setting: learning rate, steps, pixels per step or "all", schedule). Pointing `--output_dir` at an earlier
`hf-wlora reproduce --scale small` folder reuses its base field.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import torch

from hf_wlora.data import open_data_source
from hf_wlora.metrics import correlated_initialization, psnr
from hf_wlora.representations import FitSettings, fit_instances, instance_targets, load_base_field, make_representation
from hf_wlora.reproduction import stages
from hf_wlora.reproduction.config import ReproduceConfig

REFITTED = 16


def measure(field, coords: torch.Tensor, targets: torch.Tensor, settings: FitSettings) -> dict[str, float]:
    representation = make_representation("mlora_asym", field, rank=4)
    spec = representation.spec
    fits = fit_instances(representation, coords, targets, settings).factors
    count = len(targets)
    values = representation.forward(fits, coords.expand(count, -1, -1))
    start = representation.initial_factors()
    generator = torch.Generator().manual_seed(1)
    second_start = correlated_initialization(
        start, 0.5, generator, frozen=spec.masks(), distribution=representation.init_distribution()
    )
    refits = fit_instances(representation, coords, targets[:REFITTED], settings, initial=second_start).factors
    flat, again = spec.flatten(fits).double(), spec.flatten(refits).double()
    same = (flat[:REFITTED] - again).norm(dim=1).mean()
    different = torch.cdist(flat[:REFITTED], flat[REFITTED : 2 * REFITTED]).mean()
    spread = torch.linalg.svdvals(flat - flat.mean(dim=0)).square()
    return {
        "psnr": float(psnr(values, targets).mean()),
        "same_over_different": float(same / different),
        "cosine": float(torch.nn.functional.cosine_similarity(flat[:REFITTED], again).mean()),
        "top20_variance": float(spread[:20].sum() / spread.sum()),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--output_dir", type=Path, required=True)
    parser.add_argument("settings", nargs="+", help="learning_rate,steps,points_per_step|all,constant|cosine")
    args = parser.parse_args()
    budget = ReproduceConfig(scale="small", output_dir=str(args.output_dir)).budget("2d")
    field = load_base_field(stages.base_field(budget, args.output_dir / "2d", 0))
    source = open_data_source(budget.data, budget.data_options)
    instances = [source[index] for index in range(len(source))]
    coords, targets = instance_targets(instances, "image", 0, list(range(len(source))))
    print(
        "| lr, steps, pixels a step, schedule | PSNR (dB) | same glyph / different glyphs | cosine | top-20 variance |"
    )
    print("|---|---|---|---|---|")
    for setting in args.settings:
        rate, steps, points, schedule = setting.split(",")
        fit = FitSettings(
            steps=int(steps),
            learning_rate=float(rate),
            points_per_step=None if points == "all" else int(points),
            lr_schedule=schedule,
        )
        found = measure(field, coords, targets, fit)
        print(
            f"| {setting} | {found['psnr']:.2f} | {found['same_over_different']:.3f} | {found['cosine']:.3f} | "
            f"{found['top20_variance']:.2f} |",
            flush=True,
        )


if __name__ == "__main__":
    main()
