"""Command-line front end shared by `hf-wlora train` and `recipes/train.py`."""

from __future__ import annotations

import argparse
import json


def add_train_arguments(parser: argparse.ArgumentParser) -> None:
    """Arguments: a recipe YAML (its `train` section) plus the overrides people change on the command line."""
    parser.add_argument(
        "--config", required=True, help="recipe YAML with a `train` section, e.g. recipes/configs/glyphs.yaml"
    )
    parser.add_argument("--weights", help="override the weight data set (folder or Hub id)")
    parser.add_argument("--output_dir", help="override the config's output_dir")
    parser.add_argument("--max_steps", type=int, help="stop after this global step (a later --resume continues)")
    parser.add_argument(
        "--resume", action="store_true", default=None, help="continue from the latest checkpoint in output_dir"
    )
    parser.add_argument("--seed", type=int, help="override the config's seed")


def run_train_command(args: argparse.Namespace) -> int:
    """Load the config, train, and print where the pipeline went and the final metrics."""
    from .config import GeneratorTrainingConfig
    from .trainer import train_generator

    overrides = {name: getattr(args, name) for name in ("weights", "output_dir", "max_steps", "resume", "seed")}
    result = train_generator(GeneratorTrainingConfig.from_yaml(args.config, **overrides))
    if result.metrics:  # the main process
        print(f"pipeline: {result.pipeline_dir}")
        print(json.dumps(result.metrics, indent=2))
    return 0


__all__ = ["add_train_arguments", "run_train_command"]
