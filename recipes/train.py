"""Stage 3: train the diffusion transformer over a weight data set and export a WeightSpacePipeline.

    accelerate launch recipes/train.py --config recipes/configs/glyphs.yaml [--weights DIR_OR_ID] [--output_dir DIR]
    python recipes/train.py --config recipes/configs/glyphs.yaml --resume

Everything happens in `hf_wlora.pipelines.generator_training.train_generator`; this script only parses the command line.
"""

from __future__ import annotations

import argparse

from hf_wlora.pipelines.generator_training.command import add_train_arguments, run_train_command


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_train_arguments(parser)
    return run_train_command(parser.parse_args())


if __name__ == "__main__":
    raise SystemExit(main())
