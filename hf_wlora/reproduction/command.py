"""Command-line front end shared by `hf-wlora reproduce` and `recipes/reproduce.py`."""

from __future__ import annotations

import argparse
import json

from .config import MODALITIES, SCALES, SYSTEMS


def add_reproduce_arguments(parser: argparse.ArgumentParser) -> None:
    """Arguments: the scale, where to write, and optionally which modalities, representations and data."""
    parser.add_argument(
        "--scale", choices=SCALES, default="small", help="small (~30 min on 2 CPU cores) or paper (GPU)"
    )
    parser.add_argument("--output_dir", default="outputs/reproduce", help="rerun into the same folder to resume")
    parser.add_argument("--modality", nargs="+", choices=MODALITIES, default=list(MODALITIES), dest="modalities")
    parser.add_argument("--representation", nargs="+", choices=SYSTEMS, default=list(SYSTEMS), dest="representations")
    parser.add_argument("--data_2d", help="your image data source instead of the scale's, e.g. image-folder:PATH")
    parser.add_argument("--data_options_2d", type=json.loads, help="its options as JSON, e.g. '{\"resolution\": 64}'")
    parser.add_argument("--data_3d", help="your shape data source instead of the scale's, e.g. mesh-folder:PATH")
    parser.add_argument("--data_options_3d", type=json.loads, help="its options as JSON")
    parser.add_argument(
        "--image_features", help="a local vision backbone folder (CLIP, DINOv2, ...) for 2-D FD / MMD instead of pixels"
    )
    parser.add_argument("--seed", type=int, default=0)


def run_reproduce_command(args: argparse.Namespace) -> int:
    """Run the studies and print where the report went."""
    from .config import ReproduceConfig
    from .runner import reproduce

    config = ReproduceConfig(**{key: value for key, value in vars(args).items() if key in _CONFIG_KEYS})
    result = reproduce(config)
    print(f"report: {result.report_path}")
    return 0


_CONFIG_KEYS = (
    "scale",
    "output_dir",
    "modalities",
    "representations",
    "data_2d",
    "data_options_2d",
    "data_3d",
    "data_options_3d",
    "image_features",
    "seed",
)

__all__ = ["add_reproduce_arguments", "run_reproduce_command"]
