"""Reproduce the paper's four studies for the six representations and write REPORT.md.

    python recipes/reproduce.py --scale small [--output_dir DIR] [--modality 2d 3d] [--data_2d image-folder:PATH]
    python recipes/reproduce.py --scale paper      # FFHQ and ShapeNet where recipes/configs/{ffhq,shapenet}.yaml say

Everything happens in `hf_wlora.reproduction.reproduce`; this script only parses the command line. Rerun the same
command to resume an interrupted run.
"""

from __future__ import annotations

import argparse

from hf_wlora.reproduction.command import add_reproduce_arguments, run_reproduce_command


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_reproduce_arguments(parser)
    return run_reproduce_command(parser.parse_args())


if __name__ == "__main__":
    raise SystemExit(main())
