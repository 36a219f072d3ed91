"""Command-line front end shared by `hf-wlora train-field` and `recipes/train_field.py`."""

from __future__ import annotations

import argparse
import json


def add_train_field_arguments(parser: argparse.ArgumentParser) -> None:
    """Arguments: a YAML config plus the few run-control overrides people change on the command line."""
    parser.add_argument("--config", required=True, help="YAML file, e.g. recipes/configs/glyphs.yaml")
    parser.add_argument("--output_dir", help="override the config's output_dir")
    parser.add_argument("--max_steps", type=int, help="stop after this global step (a later --resume continues)")
    parser.add_argument(
        "--resume", action="store_true", default=None, help="continue from the latest checkpoint in output_dir"
    )
    parser.add_argument("--seed", type=int, help="override the config's seed")


def run_train_field_command(args: argparse.Namespace) -> int:
    """Load the config, train, and print where the outputs went and the final metrics."""
    from .config import FieldTrainingConfig
    from .trainer import train_field

    config = FieldTrainingConfig.from_yaml(
        args.config, output_dir=args.output_dir, max_steps=args.max_steps, resume=args.resume, seed=args.seed
    )
    result = train_field(config)
    if result.metrics:  # the main process
        print(f"field: {result.field_dir}\nmodulated field: {result.modulated_field_dir}")
        print(json.dumps(result.metrics, indent=2))
    return 0


__all__ = ["add_train_field_arguments", "run_train_field_command"]
