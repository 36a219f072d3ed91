"""Encoding throughput: the batched encoder against fitting one instance at a time through a PEFT adapter slot.

Both fit mlora_asym adapters (r = 4) to built-in glyph images on the default baked base field, with the same number
of Adam steps and the same learning rate, from the same initial factors:

- loop:    for each instance, load the initial factors into the PEFT adapter slot, make a fresh Adam optimiser,
           and run the steps through `model(coords)`: what fitting through PEFT's own API amounts to;
- batched: `fit_instances` on all instances at once (stacked factors, one optimiser, chunked broadcast path).

Because the batched fit is the per-instance fit computed together, the final losses agree; both means are printed.
The batched path's useful FLOP/s (the adapted layers' matmuls: forward, weight gradient, input gradient except for
the first layer, whose input is the frozen Fourier features) is compared with a dense matmul measured in the same
process. Peak memory of a whole encoding run (`--memory`) is measured in fresh processes for 200 and 2,000 instances;
their ratio must stay at most `MEMORY_RATIO_LIMIT` (memory flat in the data set's size), or the script exits with 1.

Each path runs `--repeats` times, the two in turn, and the fastest run of each counts.

Run: `python benchmarks/bench_encode.py [--instances 64] [--steps 100] [--points-per-step N] [--hidden-size 128]
[--repeats 2] [--memory] [--device cuda]` (`--hidden-size 64` with every pixel a step is the demo's own encoding).
"""

from __future__ import annotations

import argparse
import copy
import dataclasses
import json
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch
from peft import get_peft_model
from timing import matmul_flops, synchronize

from hf_wlora.data import GlyphImages
from hf_wlora.fields import NeuralFieldConfig, NeuralFieldModel, image_coordinates
from hf_wlora.representations import FitSettings, fit_instances, image_loss, make_representation, step_points
from hf_wlora.tuners.mlora import MLoraConfig, adapter_factors

# Peak memory encoding 2,000 instances over that of 200: at most this (the per-instance state is streamed to disk).
MEMORY_RATIO_LIMIT = 1.1


def glyph_targets(num_instances: int, resolution: int) -> torch.Tensor:
    data = GlyphImages(num_instances=num_instances, resolution=resolution, seed=0)
    return torch.stack([torch.as_tensor(data[i].image).reshape(-1, 3) for i in range(num_instances)])


def loop_fit(
    field: NeuralFieldModel,
    initial: dict,
    coords: torch.Tensor,
    targets: torch.Tensor,
    settings: FitSettings,
) -> torch.Tensor:
    # a copy: get_peft_model injects the adapter into the model it is given, and the field is saved afterwards
    model = get_peft_model(copy.deepcopy(field), MLoraConfig(r=4, asymmetric_mask=True)).to(coords.device)
    slot = adapter_factors(model)
    losses = []
    for target in targets:
        with torch.no_grad():
            for name, parameter in slot.items():
                parameter.copy_(initial[name])
        optimizer = torch.optim.Adam(slot.values(), lr=settings.learning_rate)
        for step in range(settings.steps):
            points = step_points(len(coords), settings, step)  # the same pixel subsets as the batched fit
            step_coords, step_target = (coords, target) if points is None else (coords[points], target[points])
            optimizer.zero_grad()
            loss = image_loss(model(step_coords).values[None], step_target[None]).sum()
            loss.backward()
            optimizer.step()
        losses.append(loss.detach())
    return torch.stack(losses)


def useful_flops(representation, points: int, instances: int, steps: int) -> float:
    """FLOPs of the adapted layers' matmuls over a fit: forward, weight gradient, and input gradient except for the
    first adapted layer (its input, the Fourier features, needs none)."""
    layers = [(layer.d_out, layer.d_in) for layer in representation.spec.layers]
    per_point = sum(3 * 2 * d_out * d_in for d_out, d_in in layers) - 2 * layers[0][0] * layers[0][1]
    return per_point * points * instances * steps


MEMORY_SCRIPT = """
import resource, sys
from hf_wlora.encoding.encoder import EncodeConfig, encode
encode(EncodeConfig(field=sys.argv[1], output_dir=sys.argv[2], data_options={"num_instances": int(sys.argv[3]),
       "resolution": 32}, steps=5, points_per_step=256, batch_size=64), progress=False)
print(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)  # KiB on Linux
"""


def peak_memory_mib(field_dir: str, num_instances: int, folder: str) -> float:
    """Peak resident memory of a whole encoding run of `num_instances` glyphs, in a fresh process."""
    output_dir = str(Path(folder) / f"weights-{num_instances}")
    command = [sys.executable, "-c", MEMORY_SCRIPT, field_dir, output_dir, str(num_instances)]
    result = subprocess.run(command, capture_output=True, text=True, check=True)
    return int(result.stdout.strip().splitlines()[-1]) / 1024


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--instances", type=int, default=64)
    parser.add_argument("--steps", type=int, default=100)
    parser.add_argument("--resolution", type=int, default=32)
    parser.add_argument("--learning-rate", type=float, default=1e-2)
    parser.add_argument("--points-per-step", type=int, default=None, help="pixels per step (default: all)")
    parser.add_argument("--hidden-size", type=int, default=128, help="the base field's width (the default field's)")
    parser.add_argument("--memory", action="store_true", help="also measure peak memory for 200 and 2,000 instances")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--repeats", type=int, default=2, help="runs of each path, taken in turn; the fastest counts")
    args = parser.parse_args()
    if args.repeats < 1:
        parser.error("--repeats must be at least 1")
    device = torch.device(args.device)
    print(f"machine: {platform.machine()}, torch {torch.__version__}, {torch.get_num_threads()} threads, {device}")

    torch.manual_seed(0)
    field_config = NeuralFieldConfig(modality="image", hidden_size=args.hidden_size)
    field = NeuralFieldModel(field_config).bake().requires_grad_(False)
    representation = make_representation("mlora_asym", field, rank=4).to(device)
    coords = image_coordinates(args.resolution, args.resolution).to(device)
    targets = glyph_targets(args.instances, args.resolution).to(device)
    settings = FitSettings(steps=args.steps, learning_rate=args.learning_rate, points_per_step=args.points_per_step)
    fit_instances(representation, coords, targets[:8], dataclasses.replace(settings, steps=2))  # warm-up

    peak = matmul_flops(device)
    # the two paths in turn, the fastest of each kept: a drift in the machine's speed then slows both alike
    batched_seconds = loop_seconds = float("inf")
    for _ in range(args.repeats):
        synchronize(device)
        start = time.perf_counter()
        batched = fit_instances(representation, coords, targets, settings)
        synchronize(device)
        batched_seconds = min(batched_seconds, time.perf_counter() - start)

        start = time.perf_counter()
        loop_losses = loop_fit(field, representation.initial_factors(), coords, targets, settings)
        synchronize(device)
        loop_seconds = min(loop_seconds, time.perf_counter() - start)
    points = args.points_per_step or args.resolution**2
    flops = useful_flops(representation, points, args.instances, args.steps)

    result = {
        "instances": args.instances,
        "steps": args.steps,
        "resolution": args.resolution,
        "hidden_size": args.hidden_size,
        "batched_instances_per_s": args.instances / batched_seconds,
        "loop_instances_per_s": args.instances / loop_seconds,
        "speedup": loop_seconds / batched_seconds,
        "batched_final_loss": batched.losses.mean().item(),
        "loop_final_loss": loop_losses.mean().item(),
        "batched_gflops": flops / batched_seconds / 1e9,
        "matmul_gflops": peak / 1e9,
        "batched_of_matmul": flops / batched_seconds / peak,
        "ms_per_step": 1e3 * batched_seconds / args.steps,
    }
    print(
        f"{args.instances} instances x {args.steps} steps at {args.resolution}x{args.resolution}, "
        f"{args.hidden_size} wide: batched "
        f"{result['batched_instances_per_s']:.2f} inst/s ({result['ms_per_step']:.1f} ms/step, "
        f"{result['batched_gflops']:.1f} GFLOP/s = {result['batched_of_matmul']:.0%} of a "
        f"{result['matmul_gflops']:.0f} GFLOP/s matmul), loop {result['loop_instances_per_s']:.2f} inst/s, "
        f"{result['speedup']:.2f}x; final loss batched {result['batched_final_loss']:.5f}, loop "
        f"{result['loop_final_loss']:.5f}"
    )
    if args.memory:
        with tempfile.TemporaryDirectory() as folder:
            field.save_pretrained(Path(folder) / "field")
            for count in (200, 2000):
                result[f"peak_memory_mib_{count}"] = peak_memory_mib(str(Path(folder) / "field"), count, folder)
                print(f"peak memory encoding {count} instances: {result[f'peak_memory_mib_{count}']:.0f} MiB")
        result["memory_ratio"] = result["peak_memory_mib_2000"] / result["peak_memory_mib_200"]
        print(f"memory 2,000 : 200 instances = {result['memory_ratio']:.3f} (limit {MEMORY_RATIO_LIMIT})")
    print(json.dumps(result))
    if result.get("memory_ratio", 0.0) > MEMORY_RATIO_LIMIT:
        sys.exit(f"peak memory grows with the data set: ratio {result['memory_ratio']:.3f} > {MEMORY_RATIO_LIMIT}")


if __name__ == "__main__":
    main()
