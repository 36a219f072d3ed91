"""Decoding fields: one instance's many points evaluated in pieces that fit the cache, against all of a call's points
at once (the code before issue 15's tenth session).

The decoders evaluate shared grids: an R^3 grid for meshes (`sdf_grid`, 65,536 points per call; 110,592 at R = 48)
and every pixel for images (`render_images`). At so many points one instance alone overfills a chunk (a 64-wide
field's activation is 16 MiB at 65,536 points), so every element-wise pass ran from memory;
`Representation.forward` now evaluates `points_per_chunk` points at a time (8,192 at 64 wide on the CPU). A field
is evaluated point by point, so the values are the same to the bit; the script exits with 1 if any differs.

Fields: the demo's base fields (3-D and 2-D, 64 wide, 4 layers; untrained: the time does not depend on the weights)
with `--instances` instances of mlora_asym factors (the tuner's start plus noise); with `--pipeline`, a trained
`WeightSpacePipeline`'s samples on its own field instead (the 3-D study's generators: `hf-wlora reproduce --scale
small --modality 3d`, then `OUTPUT_DIR/3d/generators/mlora_asym/pipeline`).

Reported: seconds per decode for both paths (best of `--repeats`, the paths in turn), the ratio, identity.
Run: `python benchmarks/bench_decode.py [--instances 10] [--mesh-resolution 48] [--image-resolution 128]
[--pipeline DIR] [--repeats 3]`.
"""

from __future__ import annotations

import argparse
import json
import platform
from collections.abc import Callable
from pathlib import Path

import torch
from timing import best_times

import hf_wlora.representations.kinds as kinds
from hf_wlora.demo import DEMO_SETTINGS
from hf_wlora.fields import NeuralFieldConfig, NeuralFieldModel, render_images, sdf_grid
from hf_wlora.pipelines import WeightSpacePipeline
from hf_wlora.representations import make_representation

CPU = torch.device("cpu")


def demo_decoder(modality: str, instances: int, resolution: int) -> Callable[[], torch.Tensor]:
    """SDF grids (3-D) or images (2-D) of `instances` mlora_asym instances on the demo's (untrained) base field."""
    torch.manual_seed(0)
    settings = DEMO_SETTINGS[modality]["train_field"]["model"]
    field = NeuralFieldModel(NeuralFieldConfig(modality="shape" if modality == "3d" else "image", **settings)).bake()
    representation = make_representation("mlora_asym", field, rank=4)
    factors = {
        name: value + 0.05 * torch.randn(instances, *value.shape)
        for name, value in representation.initial_factors().items()
    }
    function = representation.field_function(factors)
    if modality == "3d":
        return lambda: sdf_grid(function, resolution)
    return lambda: render_images(function, resolution)


def pipeline_decoder(path: Path, instances: int, resolution: int) -> Callable[[], torch.Tensor]:
    """SDF grids of `instances` samples of a trained 3-D pipeline (20 sampling steps), decoded by the pipeline."""
    pipeline = WeightSpacePipeline.from_pretrained(path)
    pipeline.set_progress_bar_config(disable=True)
    num_classes = pipeline.transformer.config.num_classes
    weights = pipeline(
        instances,
        class_labels=[index % num_classes for index in range(instances)] if num_classes else None,
        num_inference_steps=20,
        generator=torch.Generator().manual_seed(0),
        output_type="weights",
    ).weights
    return lambda: pipeline.decode(weights, "pt", mesh_resolution=resolution).sdf_grids


def compare(decode: Callable[[], torch.Tensor], repeats: int) -> dict[str, float | bool]:
    """Time `decode` with all of a call's points at once (before) and in pieces (after); compare the values."""
    in_pieces = kinds.points_per_chunk
    outputs: dict[str, torch.Tensor] = {}

    def path(name: str, points: Callable[[torch.device, int], int]) -> Callable[[], None]:
        def run() -> None:
            kinds.points_per_chunk = points
            try:
                outputs[name] = decode()
            finally:
                kinds.points_per_chunk = in_pieces

        return run

    times = best_times(
        {"before": path("before", lambda device, width: 2**62), "after": path("after", in_pieces)}, repeats, CPU
    )
    return {
        "before_s": times["before"],
        "after_s": times["after"],
        "speedup": times["before"] / times["after"],
        "identical": torch.equal(outputs["before"], outputs["after"]),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--instances", type=int, default=10)
    parser.add_argument("--mesh-resolution", type=int, default=48)
    parser.add_argument("--image-resolution", type=int, default=128)
    parser.add_argument("--pipeline", type=Path, help="a trained 3-D WeightSpacePipeline folder (else the demo field)")
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    print(
        f"machine: {platform.processor() or platform.machine()}, torch {torch.__version__}, "
        f"{torch.get_num_threads()} threads"
    )
    decode_meshes = (
        pipeline_decoder(args.pipeline, args.instances, args.mesh_resolution)
        if args.pipeline
        else demo_decoder("3d", args.instances, args.mesh_resolution)
    )
    results = {
        "meshes": compare(decode_meshes, args.repeats),
        "images": compare(demo_decoder("2d", args.instances, args.image_resolution), args.repeats),
    }
    for name, grid in (("meshes", f"{args.mesh_resolution}^3"), ("images", f"{args.image_resolution}^2")):
        result = results[name]
        print(
            f"{name} ({args.instances} instances on a {grid} grid): before {result['before_s']:.3f} s, after "
            f"{result['after_s']:.3f} s, {result['speedup']:.2f}x, "
            f"{'identical' if result['identical'] else 'VALUES DIFFER'}"
        )
    print(json.dumps(results))
    if not all(result["identical"] for result in results.values()):
        raise SystemExit(1)


if __name__ == "__main__":
    main()
