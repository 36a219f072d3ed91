"""Command-line front end shared by `hf-wlora encode` and `recipes/encode.py`."""

from __future__ import annotations

import argparse
import json


def add_encode_arguments(parser: argparse.ArgumentParser) -> None:
    """Arguments: a recipe YAML (its `encode` section) plus the overrides people change on the command line."""
    parser.add_argument(
        "--config", required=True, help="recipe YAML with an `encode` section, e.g. recipes/configs/glyphs.yaml"
    )
    parser.add_argument("--field", help="override the base field (local folder or Hub id)")
    parser.add_argument("--output_dir", help="override where the weight data set is written")
    parser.add_argument("--representation", help="override the representation (mlp, mlp_asym, lora, ..., mlora_asym)")
    parser.add_argument("--steps", type=int, help="override the fitting steps per instance")
    parser.add_argument("--batch_size", type=int, help="override the instances fitted together")


def run_encode_command(args: argparse.Namespace) -> int:
    """Load the config, encode (resuming if the output folder holds an unfinished run), print the figures."""
    from .encoder import EncodeConfig, encode

    overrides = {name: getattr(args, name) for name in ("field", "output_dir", "representation", "steps", "batch_size")}
    result = encode(EncodeConfig.from_yaml(args.config, **overrides))
    print(f"weight data set: {result.output_dir} ({result.score_name})")
    print(json.dumps(result.figures, indent=2))
    return 0
