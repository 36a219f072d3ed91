"""Encoding throughput: the batched encoder against fitting one instance at a time through a PEFT adapter slot.

Both fit mlora_asym adapters (r = 4) to built-in glyph images on the default baked base field, with the same number
of Adam steps and the same learning rate, from the same initial factors:

- loop:    for each instance, load the initial factors into the PEFT adapter slot, make a fresh Adam optimiser,
           and run the steps through `model(coords)`: what fitting through PEFT's own API amounts to;
- batched: `fit_instances` on all instances at once (stacked factors, one optimiser, chunked broadcast path).

Because the batched fit is the per-instance fit computed together, the final losses agree; both means are printed.
Peak memory of a whole encoding run (`--memory`) is measured in fresh processes for two data set sizes.

Run: `python benchmarks/bench_encode.py [--instances 64] [--steps 100] [--points-per-step N] [--memory]`.
"""

from __future__ import annotations

import argparse
import json
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch
from peft import get_peft_model

from hf_wlora.data import GlyphImages
from hf_wlora.fields import NeuralFieldConfig, NeuralFieldModel, image_coordinates
from hf_wlora.representations import FitSettings, fit_instances, image_loss, make_representation, step_points
from hf_wlora.tuners.mlora import MLoraConfig, adapter_factors


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
    model = get_peft_model(field, MLoraConfig(r=4, asymmetric_mask=True))
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
    parser.add_argument("--memory", action="store_true", help="also measure peak memory for 200 and 2,000 instances")
    args = parser.parse_args()
    print(f"machine: {platform.machine()}, torch {torch.__version__}, {torch.get_num_threads()} threads")

    torch.manual_seed(0)
    field = NeuralFieldModel(NeuralFieldConfig(modality="image")).bake().requires_grad_(False)
    representation = make_representation("mlora_asym", field, rank=4)
    coords = image_coordinates(args.resolution, args.resolution)
    targets = glyph_targets(args.instances, args.resolution)
    settings = FitSettings(steps=args.steps, learning_rate=args.learning_rate, points_per_step=args.points_per_step)

    start = time.perf_counter()
    batched = fit_instances(representation, coords, targets, settings)
    batched_seconds = time.perf_counter() - start

    start = time.perf_counter()
    loop_losses = loop_fit(field, representation.initial_factors(), coords, targets, settings)
    loop_seconds = time.perf_counter() - start

    result = {
        "instances": args.instances,
        "steps": args.steps,
        "resolution": args.resolution,
        "batched_instances_per_s": args.instances / batched_seconds,
        "loop_instances_per_s": args.instances / loop_seconds,
        "speedup": loop_seconds / batched_seconds,
        "batched_final_loss": batched.losses.mean().item(),
        "loop_final_loss": loop_losses.mean().item(),
    }
    print(
        f"{args.instances} instances x {args.steps} steps at {args.resolution}x{args.resolution}: batched "
        f"{result['batched_instances_per_s']:.2f} inst/s, loop {result['loop_instances_per_s']:.2f} inst/s, "
        f"{result['speedup']:.2f}x; final loss batched {result['batched_final_loss']:.5f}, loop "
        f"{result['loop_final_loss']:.5f}"
    )
    if args.memory:
        with tempfile.TemporaryDirectory() as folder:
            field.save_pretrained(Path(folder) / "field")
            for count in (200, 2000):
                result[f"peak_memory_mib_{count}"] = peak_memory_mib(str(Path(folder) / "field"), count, folder)
                print(f"peak memory encoding {count} instances: {result[f'peak_memory_mib_{count}']:.0f} MiB")
    print(json.dumps(result))


if __name__ == "__main__":
    main()
