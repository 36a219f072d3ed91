"""Stage 2: encode a data set into a weight data set (one fitted representation per instance).

    accelerate launch recipes/encode.py --config recipes/configs/glyphs.yaml [--field DIR_OR_ID] [--output_dir DIR]

Instances are split across the launched processes; rerunning the same command resumes an interrupted run.
Everything happens in `hf_wlora.encoding.encoder.encode`; this script only parses the command line.
"""

from __future__ import annotations

import argparse

from hf_wlora.encoding.command import add_encode_arguments, run_encode_command


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_encode_arguments(parser)
    return run_encode_command(parser.parse_args())


if __name__ == "__main__":
    raise SystemExit(main())
