"""What makes a weight representation generate: encode, train a generator, sample and measure, per setting.

Every variant changes the encoding (`EncodeConfig` keys) and/or the generator (`GeneratorTrainingConfig` keys) of
`hf-wlora reproduce --scale small` on the 2-D built-in glyphs, and is measured the way the studies measure: mean
reconstruction PSNR of the encoding, the generator's held-out loss, FD on the learned features and on pixels of 141
class-balanced samples, the fraction of samples that copy a training glyph and their mean nearest-training PSNR,
and the structure study at lambda = 0.5 (cosine similarity and PSNR barrier of two fits from correlated starts).

Run: `OMP_NUM_THREADS=2 python benchmarks/sweep_generation.py --output_dir /tmp/rep_small --variants baseline
lr-1e-2` (about 3 min per variant on 2 CPU cores). Pointing `--output_dir` at an earlier `hf-wlora reproduce
--scale small` folder reuses its base field and its learned feature extractor; every variant's encoding, generator
and figures go to `OUTPUT_DIR/2d/generation-sweep/VARIANT/` and are reused by a rerun. `--list` prints the variants.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
from pathlib import Path
from typing import Any

from hf_wlora.encoding import INFO_FILE_NAME, encode, load_weight_dataset
from hf_wlora.reproduction import stages, studies
from hf_wlora.reproduction.config import ReproduceConfig
from hf_wlora.reproduction.runner import LEARNED_FEATURES_DIR

TRUNK = ["trunk.0.linear", "trunk.1.linear", "trunk.2.linear", "trunk.3.linear"]
# variant -> (representation, encode overrides, generator overrides)
VARIANTS: dict[str, tuple[str, dict[str, Any], dict[str, Any]]] = {
    "baseline": ("mlora_asym", {}, {}),
    "lr-1e-2": ("mlora_asym", {"learning_rate": 1e-2}, {}),
    "lr-3e-2": ("mlora_asym", {"learning_rate": 3e-2}, {}),
    "cosine": ("mlora_asym", {"lr_schedule": "cosine"}, {}),
    "cosine-lr-3e-2": ("mlora_asym", {"lr_schedule": "cosine", "learning_rate": 3e-2}, {}),
    "decay-0.3": ("mlora_asym", {"weight_decay": 0.3}, {}),
    "decay-1": ("mlora_asym", {"weight_decay": 1.0}, {}),
    "decay-3": ("mlora_asym", {"weight_decay": 3.0}, {}),
    "lr-3e-2-1000-cosine": ("mlora_asym", {"learning_rate": 3e-2, "steps": 1000, "lr_schedule": "cosine"}, {}),
    "full-grid": ("mlora_asym", {"points_per_step": None}, {}),
    "full-grid-cosine": ("mlora_asym", {"points_per_step": None, "lr_schedule": "cosine"}, {}),
    "trunk-only": ("mlora_asym", {"target_modules": TRUNK}, {}),
    "with-head": (
        "mlora_asym",
        {"target_modules": ["input_proj.linear", *TRUNK, "head.linear"], "rank_pattern": {"head.linear": 3}},
        {},
    ),
    "trunk-only-cosine": ("mlora_asym", {"target_modules": TRUNK, "lr_schedule": "cosine"}, {}),
    "epsilon": ("mlora_asym", {}, {"prediction_type": "epsilon"}),
    "v-prediction": ("mlora_asym", {}, {"prediction_type": "v_prediction"}),
    "dit-3000": ("mlora_asym", {}, {"steps": 3000}),
    # equal transformer sizes: mlora_asym's 2.10M default against an mlp DiT of 2.21M (the default mlp DiT is 9.68M,
    # its per-tensor-token projections dominate), and mlp's 9.68M against an mlora_asym DiT of 7.87M
    "dit-256": ("mlora_asym", {}, {"model": {"hidden_size": 256, "num_layers": 4, "num_heads": 4}}),
    "mlp-dit-32": ("mlp", {}, {"model": {"hidden_size": 32, "num_layers": 4, "num_heads": 4}}),
    "full-grid-cosine-lr-0.3": (
        "mlora_asym",
        {"points_per_step": None, "lr_schedule": "cosine", "learning_rate": 0.3},
        {},
    ),
    "full-grid-cosine-dit-256": (
        "mlora_asym",
        {"points_per_step": None, "lr_schedule": "cosine"},
        {"model": {"hidden_size": 256, "num_layers": 4, "num_heads": 4}},
    ),
    "full-grid-cosine-dit-192-3000": (
        "mlora_asym",
        {"points_per_step": None, "lr_schedule": "cosine"},
        {"model": {"hidden_size": 192, "num_layers": 4, "num_heads": 4}, "steps": 3000},
    ),
    "mlora-baseline": ("mlora", {}, {}),
    "mlora-cosine": ("mlora", {"lr_schedule": "cosine"}, {}),
    "mlp-baseline": ("mlp", {}, {}),
    "mlp-matched": ("mlp", {"mlp_hidden_size": 14}, {}),
}


def run_variant(folder: Path, field_dir: Path, budget: Any, name: str, seed: int) -> dict[str, Any]:
    """Encode, train, sample and measure one variant (each step reused when already done)."""
    representation, encode_overrides, generator_overrides = VARIANTS[name]
    results_path = folder / "generation-sweep" / name / "results.json"
    if results_path.is_file():
        return json.loads(results_path.read_text())
    variant_dir = results_path.parent
    budget = dataclasses.replace(
        budget,
        encode={**budget.encode, **encode_overrides},
        generation={**budget.generation, **generator_overrides},
        structure_lambdas=[0.5],
        # the rows measured before reproduce matched transformer sizes, and those that set a model, keep it as given
        equal_transformer_sizes=False,
    )
    weights_dir = variant_dir / "weights" / name
    if not (weights_dir / INFO_FILE_NAME).is_file():
        encode(stages.encode_config(budget, representation, field_dir, weights_dir, seed))
    weights = load_weight_dataset(weights_dir)
    pipeline_dir = stages.generator(budget, weights_dir, variant_dir, seed)
    extractor = studies.learned_extractor(budget, folder / LEARNED_FEATURES_DIR, seed)
    generation = studies.generation_study(
        budget, pipeline_dir, variant_dir / "samples.png", seed, learned_features=extractor
    )
    structure = studies.structure_study(budget, representation, field_dir, seed)["rows"][0]
    results = {
        "representation": representation,
        "encode": encode_overrides,
        "generator": generator_overrides,
        "numbers_per_instance": weights.spec.num_parameters,
        "psnr": weights.info.splits["train"]["score_mean"],
        "dit_loss": generation["generator"]["eval_loss"],
        "dit_parameters": generation["generator"]["num_parameters"],
        "fd_learned": generation["learned_features"]["fd"],
        "fd_pixels": generation["fd"],
        **generation["memorization"],
        "cosine_at_0.5": structure["cosine_mean"],
        "barrier_at_0.5": structure["barrier_mean"],
    }
    results_path.write_text(json.dumps(results, indent=2) + "\n")
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--output_dir", type=Path, required=True)
    parser.add_argument("--variants", nargs="+", default=["baseline"])
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--num_instances", type=int, default=None, help="glyphs (default: the small scale's 128)")
    parser.add_argument("--list", action="store_true", help="print the variants and exit")
    args = parser.parse_args()
    if args.list:
        for name, (representation, encoding, generator) in VARIANTS.items():
            print(f"{name}: {representation}, encode {encoding}, generator {generator}")
        return
    unknown = sorted(set(args.variants) - set(VARIANTS))
    if unknown:
        parser.error(f"unknown variants {unknown}; --list shows them.")

    budget = ReproduceConfig(scale="small", output_dir=str(args.output_dir)).budget("2d")
    if args.num_instances is not None:
        budget = dataclasses.replace(budget, data_options={**budget.data_options, "num_instances": args.num_instances})
    folder = args.output_dir / "2d"
    field_dir = stages.base_field(budget, folder, args.seed)
    print(
        "| variant | representation | numbers | PSNR (dB) | DiT parameters | DiT loss | FD, learned | FD, pixels | "
        "copies | nearest-training PSNR | cosine / barrier at λ=0.5 |"
    )
    print("|---|---|---|---|---|---|---|---|---|---|---|")
    for name in args.variants:
        found = run_variant(folder, field_dir, budget, name, args.seed)
        print(
            f"| {name} | {found['representation']} | {found['numbers_per_instance']} | {found['psnr']:.2f} | "
            f"{found['dit_parameters'] / 1e6:.2f}M | {found['dit_loss']:.4f} | {found['fd_learned']:.0f} | "
            f"{found['fd_pixels']:.1f} | "
            f"{found['copy_fraction']:.2f} | {found['nearest_training_psnr_mean']:.2f} | "
            f"{found['cosine_at_0.5']:.3f} / {found['barrier_at_0.5']:.2f} |",
            flush=True,
        )


if __name__ == "__main__":
    main()
