"""Stage 2's learning rate per representation kind: the mean reconstruction score against Adam's learning rate.

This is what chose `hf_wlora.representations.DEFAULT_LEARNING_RATES`. It trains (or reuses) the base field
of `hf-wlora reproduce --scale small` for one modality, then encodes that scale's data (128 glyphs with 300 steps,
or 32 shapes with 150 steps; rank 4, the masks' defaults) as each representation at each learning rate, and prints
a Markdown table of the mean score over all instances: PSNR in dB for 2-D (higher is better), Chamfer distance for
3-D (lower is better; a mean over the shapes whose mesh could be extracted, the count of failures beside it).

Run: `python benchmarks/sweep_encoding_lr.py --modality 2d --output_dir /tmp/rep_small [--lr_schedule cosine]`
(about 20 s per fit on 2 CPU cores; `--lr_schedule` replaces the scale's schedule). Pointing `--output_dir` at the
folder of an earlier `hf-wlora reproduce --scale small` reuses its base field; the fits go to
`OUTPUT_DIR/MODALITY/lr-sweep/` and are reused by a rerun.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
from pathlib import Path

from hf_wlora.encoding import INFO_FILE_NAME, encode, load_weight_dataset
from hf_wlora.reproduction import stages
from hf_wlora.reproduction.config import ReproduceConfig


def mean_score(weights_dir: Path) -> tuple[float, int]:
    """The mean reconstruction score of a weight data set, and how many instances had no finite score."""
    figures = load_weight_dataset(weights_dir).info.splits["train"]
    return figures["score_mean"], figures["num_non_finite_scores"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--modality", choices=["2d", "3d"], default="2d")
    parser.add_argument("--output_dir", type=Path, required=True)
    parser.add_argument("--representations", nargs="+", default=["lora", "lora_asym", "mlora", "mlora_asym"])
    parser.add_argument("--learning_rates", nargs="+", type=float, default=[1e-2, 3e-2, 1e-1, 3e-1])
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--lr_schedule", choices=["constant", "cosine"], default=None, help="default: the scale's")
    args = parser.parse_args()

    budget = ReproduceConfig(scale="small", output_dir=str(args.output_dir)).budget(args.modality)
    folder = args.output_dir / args.modality
    field_dir = stages.base_field(budget, folder, args.seed)
    table = {}
    for name in args.representations:
        for learning_rate in args.learning_rates:
            config = stages.encode_config(budget, name, field_dir, folder, args.seed)
            schedule = args.lr_schedule or config.lr_schedule
            output_dir = folder / "lr-sweep" / f"{name}-{learning_rate:g}-{schedule}"
            if not (output_dir / INFO_FILE_NAME).is_file():
                changed = {"learning_rate": learning_rate, "lr_schedule": schedule, "output_dir": str(output_dir)}
                encode(dataclasses.replace(config, **changed))
            table[name, learning_rate] = mean_score(output_dir)

    score = "mean PSNR (dB)" if args.modality == "2d" else "mean Chamfer (failed meshes)"
    print(f"| representation | {' | '.join(f'lr {rate:g}' for rate in args.learning_rates)} |  <- {score}")
    print(f"|---|{'---|' * len(args.learning_rates)}")
    for name in args.representations:
        cells = []
        for learning_rate in args.learning_rates:
            value, failed = table[name, learning_rate]
            cells.append(
                (f"{value:.2f}" if args.modality == "2d" else f"{value:.2e}") + (f" ({failed})" if failed else "")
            )
        print(f"| {name} | {' | '.join(cells)} |")
    results = {f"{name}@{rate:g}": list(value) for (name, rate), value in table.items()}
    (folder / "lr-sweep" / "results.json").write_text(json.dumps(results, indent=2) + "\n")


if __name__ == "__main__":
    main()
