"""One fitting step (forward + backward) for N instances: the batched mLoRA path against a loop over one PEFT slot.

The field is a coordinate MLP: fixed Fourier features of 2-D points, `depth` adapted `width` x `width` layers with
ReLU, and an RGB head. Each instance has its own mlora_asym factors (r = 4) and its own target values.

- loop:    for each instance, copy its factors into the single PEFT adapter slot, forward, backward, copy grads out
           (what fitting through PEFT's own API amounts to);
- batched: `hf_wlora.batched_loss_backward` over stacked factors, chunked, with vectorize="broadcast" (one fused
           batched matmul per layer; this field's forward broadcasts over instances) and with the generic "vmap";
- matmul:  a 2048 x 2048 x 2048 float32 matmul in the same process, the machine's practical peak.

Reported: milliseconds per step, the speed-up of batched over loop, and the batched path's useful FLOP/s as a
fraction of the matmul's (useful = the adapted layers' matmuls: forward, weight gradient, and input gradient except
for the first adapted layer). Run: `python benchmarks/bench_mlora.py [--device cuda] [--repeats 5]`.
"""

from __future__ import annotations

import argparse
import json
import platform
from collections.abc import Callable

import torch
from peft import get_peft_model
from timing import best_times, matmul_flops
from torch import nn

import hf_wlora
from hf_wlora.tuners.mlora import adapter_factors, batched_loss_backward

RANK = 4
NUM_INSTANCES = 64
SIZES = {"large": (256, 1024), "small": (64, 256)}  # (width, points)


class CoordinateField(nn.Module):
    def __init__(self, width: int, depth: int = 4) -> None:
        super().__init__()
        self.register_buffer("frequencies", torch.randn(2, width // 2) * 3.0)
        self.layers = nn.ModuleList(nn.Linear(width, width) for _ in range(depth))
        self.head = nn.Linear(width, 3)

    def forward(self, coords: torch.Tensor) -> torch.Tensor:
        projected = coords @ self.frequencies
        x = torch.cat([projected.sin(), projected.cos()], dim=-1)
        for layer in self.layers:
            x = torch.relu(layer(x))
        return self.head(x)


def per_instance_loss(outputs: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    return (outputs - targets).pow(2).flatten(1).mean(dim=1)


def bench_size(width: int, points: int, device: torch.device, repeats: int) -> dict[str, float]:
    torch.manual_seed(0)
    config = hf_wlora.MLoraConfig(
        r=RANK, target_modules=["layers.0", "layers.1", "layers.2", "layers.3"], asymmetric_mask=True
    )
    model = get_peft_model(CoordinateField(width), config).to(device)
    slot = adapter_factors(model)
    stacked = {
        name: (value.detach() + 0.01 * torch.randn(NUM_INSTANCES, *value.shape, device=device)).requires_grad_(True)
        for name, value in slot.items()
    }
    coords = torch.rand(NUM_INSTANCES, points, 2, device=device) * 2 - 1
    targets = torch.rand(NUM_INSTANCES, points, 3, device=device)

    def loop_step() -> None:
        for index in range(NUM_INSTANCES):
            with torch.no_grad():
                for name, parameter in slot.items():
                    parameter.copy_(stacked[name][index])
                    parameter.grad = None
            per_instance_loss(model(coords[index])[None], targets[index][None]).sum().backward()
            with torch.no_grad():
                for name, parameter in slot.items():
                    stacked[name].grad[index] = parameter.grad

    def batched_step(vectorize: str, chunk_size: int | None = None) -> Callable[[], None]:
        def step() -> None:
            for value in stacked.values():
                value.grad = None
            batched_loss_backward(
                model, stacked, (coords,), (targets,), per_instance_loss, chunk_size=chunk_size, vectorize=vectorize
            )

        return step

    for value in stacked.values():
        value.grad = torch.zeros_like(value)
    steps = {
        "loop": loop_step,
        "broadcast": batched_step("broadcast"),
        "vmap": batched_step("vmap"),
        "unchunked": batched_step("broadcast", NUM_INSTANCES),
    }
    times = best_times(steps, repeats, device)
    useful_flops = NUM_INSTANCES * 2 * points * width * width * (4 + 4 + 3)
    result = {f"{name}_ms": 1e3 * seconds for name, seconds in times.items()}
    result.update({f"{name}_gflops": useful_flops / seconds / 1e9 for name, seconds in times.items()})
    result.update({f"{name}_speedup": times["loop"] / seconds for name, seconds in times.items() if name != "loop"})
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    device = torch.device(args.device)
    print(
        f"machine: {platform.processor() or platform.machine()}, torch {torch.__version__}, "
        f"{torch.get_num_threads()} threads, device {device}"
    )
    results = {"device": str(device)}
    for name, (width, points) in SIZES.items():
        peak = matmul_flops(device, args.repeats)  # measured next to each size: the machines are noisy
        result = bench_size(width, points, device, args.repeats)
        result["matmul_gflops"] = peak / 1e9
        results[name] = result
        print(f"{name} field ({width} wide, {points} points, N={NUM_INSTANCES}), matmul {peak / 1e9:.0f} GFLOP/s:")
        for path in ("loop", "broadcast", "vmap", "unchunked"):
            speedup = "" if path == "loop" else f", {result[f'{path}_speedup']:.2f}x the loop"
            print(
                f"  {path:9s} {result[f'{path}_ms']:8.1f} ms  {result[f'{path}_gflops']:6.1f} GFLOP/s = "
                f"{result[f'{path}_gflops'] * 1e9 / peak:4.0%} of matmul{speedup}"
            )
    print(json.dumps(results))


if __name__ == "__main__":
    main()
