"""Command-line front end shared by `hf-wlora encode` and `recipes/encode.py`."""

from __future__ import annotations

import argparse
import json
from pathlib import Path


def add_encode_arguments(parser: argparse.ArgumentParser) -> None:
    """Arguments: a recipe YAML (its `encode` section) plus the overrides people change on the command line."""
    parser.add_argument(
        "--config", required=True, help="recipe YAML with an `encode` section, e.g. recipes/configs/glyphs.yaml"
    )
    parser.add_argument("--field", help="override the base field (local folder or Hub id)")
    parser.add_argument("--output_dir", help="override where the weight data set is written")
    parser.add_argument(
        "--representation",
        help="override the representation (mlp, mlp_asym, lora, ..., mlora_asym); the recipe's learning rate then "
        "gives way to the new kind's default unless --learning_rate is given",
    )
    parser.add_argument("--learning_rate", type=float, help="override Adam's learning rate for the fits")
    parser.add_argument("--steps", type=int, help="override the fitting steps per instance")
    parser.add_argument("--batch_size", type=int, help="override the instances fitted together")


def run_encode_command(args: argparse.Namespace) -> int:
    """Load the config, encode (resuming if the output folder holds an unfinished run), print the figures."""
    from ..representations import DEFAULT_LEARNING_RATES
    from ..training.config_checks import read_recipe_section
    from .encoder import EncodeConfig, encode

    names = ("field", "output_dir", "representation", "steps", "batch_size", "learning_rate")
    overrides = {name: getattr(args, name) for name in names}
    recipe = read_recipe_section(Path(args.config), EncodeConfig.section)
    recipe_kind = recipe.get("representation", EncodeConfig.setting_defaults()["representation"])
    if args.representation not in (None, recipe_kind) and args.learning_rate is None:
        # a recipe's rate is tuned for its own kind (mLoRA's 1e-1 diverges for additive LoRA, and is 100x the mlp's)
        overrides["learning_rate"] = DEFAULT_LEARNING_RATES.get(args.representation)
        if recipe.get("learning_rate") is not None and overrides["learning_rate"] is not None:
            print(
                f"{args.config} sets learning_rate {recipe['learning_rate']} for {recipe_kind}; fitting "
                f"{args.representation} at its default {overrides['learning_rate']} (--learning_rate to choose)."
            )
    result = encode(EncodeConfig.from_yaml(args.config, **overrides))
    print(f"weight data set: {result.output_dir} ({result.score_name})")
    print(json.dumps(result.figures, indent=2))
    return 0
