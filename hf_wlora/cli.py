"""`hf-wlora` command line: thin wrappers over the same functions the recipes/ scripts call."""

from __future__ import annotations

import argparse
from collections.abc import Callable, Sequence

# subcommand name -> (help, function adding its arguments, function running it); each module adds its own entry
Command = tuple[str, Callable[[argparse.ArgumentParser], None], Callable[[argparse.Namespace], int | None]]


def _commands() -> dict[str, Command]:
    from .demo import add_demo_arguments, run_demo_command
    from .encoding.command import add_encode_arguments, run_encode_command
    from .fields.auto_decoder.command import add_train_field_arguments, run_train_field_command
    from .pipelines.generator_training.command import add_train_arguments, run_train_command
    from .reproduction.command import add_reproduce_arguments, run_reproduce_command

    return {
        "demo": ("run the whole pipeline on built-in data", add_demo_arguments, run_demo_command),
        "train-field": (
            "stage 1: train a neural field (variational auto-decoder) and export the base field",
            add_train_field_arguments,
            run_train_field_command,
        ),
        "encode": ("stage 2: encode a data set into a weight data set", add_encode_arguments, run_encode_command),
        "train": (
            "stage 3: train the diffusion transformer over a weight data set and export a pipeline",
            add_train_arguments,
            run_train_command,
        ),
        "reproduce": (
            "run the paper's studies for the six representations and write REPORT.md",
            add_reproduce_arguments,
            run_reproduce_command,
        ),
    }


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="hf-wlora", description="Weight-space learning with neural fields.")
    subparsers = parser.add_subparsers(dest="command", required=True)
    commands = _commands()
    for name, (help_text, add_arguments, _) in commands.items():
        add_arguments(subparsers.add_parser(name, help=help_text, description=help_text))
    args = parser.parse_args(argv)
    return int(commands[args.command][2](args) or 0)


if __name__ == "__main__":
    raise SystemExit(main())
