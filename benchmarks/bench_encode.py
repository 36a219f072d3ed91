"""Encoding throughput: the batched encoder against fitting one instance at a time through a PEFT adapter slot.

Both fit mlora_asym adapters (r = 4) to built-in glyph images on the default baked base field, with the same number
of Adam steps and the same learning rate, from the same initial factors:

- loop:    for each instance, load the initial factors into the PEFT adapter slot, make a fresh Adam optimiser,
           and run the steps through `model(coords)`: what fitting through PEFT's own API amounts to;
- batched: `fit_instances` on all instances at once (stacked factors, one optimiser, chunked broadcast path).

Because the batched fit is the per-instance fit computed together, the final losses agree; both means are printed.
Peak memory of a whole encoding run (`--memory`) is measured in fresh processes for two data set sizes.

Run: `python benchmarks/bench_encode.py [--instances 64] [--steps 100] [--resolution 32] [--memory]`.
"""

from __future__ import annotations

import argparse
import json
import platform
import time

import torch
from peft import get_peft_model

from hf_wlora.data import GlyphImages
from hf_wlora.encoding.fitting import FitSettings, fit_instances, image_loss
from hf_wlora.encoding.representations import make_representation
from hf_wlora.fields import NeuralFieldConfig, NeuralFieldModel, image_coordinates
from hf_wlora.tuners.mlora import MLoraConfig, adapter_factors


def glyph_targets(num_instances: int, resolution: int) -> torch.Tensor:
    data = GlyphImages(num_instances=num_instances, resolution=resolution, seed=0)
    return torch.stack([torch.as_tensor(data[i].image).reshape(-1, 3) for i in range(num_instances)])


def loop_fit(
    field: NeuralFieldModel,
    initial: dict,
    coords: torch.Tensor,
    targets: torch.Tensor,
    steps: int,
    learning_rate: float,
) -> torch.Tensor:
    model = get_peft_model(field, MLoraConfig(r=4, asymmetric_mask=True))
    slot = adapter_factors(model)
    losses = []
    for target in targets:
        with torch.no_grad():
            for name, parameter in slot.items():
                parameter.copy_(initial[name])
        optimizer = torch.optim.Adam(slot.values(), lr=learning_rate)
        for _ in range(steps):
            optimizer.zero_grad()
            loss = image_loss(model(coords).values[None], target[None]).sum()
            loss.backward()
            optimizer.step()
        losses.append(loss.detach())
    return torch.stack(losses)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--instances", type=int, default=64)
    parser.add_argument("--steps", type=int, default=100)
    parser.add_argument("--resolution", type=int, default=32)
    parser.add_argument("--learning-rate", type=float, default=1e-2)
    args = parser.parse_args()
    print(f"machine: {platform.machine()}, torch {torch.__version__}, {torch.get_num_threads()} threads")

    torch.manual_seed(0)
    field = NeuralFieldModel(NeuralFieldConfig(modality="image")).bake().requires_grad_(False)
    representation = make_representation("mlora_asym", field, rank=4)
    coords = image_coordinates(args.resolution, args.resolution)
    targets = glyph_targets(args.instances, args.resolution)
    settings = FitSettings(steps=args.steps, learning_rate=args.learning_rate)

    start = time.perf_counter()
    batched = fit_instances(representation, coords, targets, settings)
    batched_seconds = time.perf_counter() - start

    start = time.perf_counter()
    loop_losses = loop_fit(field, representation.initial_factors(), coords, targets, args.steps, args.learning_rate)
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
    print(json.dumps(result))


if __name__ == "__main__":
    main()
