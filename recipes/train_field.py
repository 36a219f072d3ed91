"""Stage 1: train a neural field as a variational auto-decoder and export the baked base field.

    accelerate launch recipes/train_field.py --config recipes/configs/glyphs.yaml [--output_dir DIR] [--max_steps N]
    python recipes/train_field.py --config recipes/configs/shapes.yaml --resume

Everything happens in `hf_wlora.fields.auto_decoder.train_field`; this script only parses the command line.
"""

from __future__ import annotations

import argparse

from hf_wlora.fields.auto_decoder.command import add_train_field_arguments, run_train_field_command


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_train_field_arguments(parser)
    return run_train_field_command(parser.parse_args())


if __name__ == "__main__":
    raise SystemExit(main())
