"""Where one fitting step's time goes: `fit_instances` on glyphs under torch's profiler, by kind of work.

The field is the default baked 2-D field at `--width` (128: the demo's encoding benchmark; 256: a paper-size one),
4 trunk layers, mlora_asym r = 4, 64 instances, 256 pixels per step. Each profiled operator is put in one bucket:
the batched matmuls (bmm, baddbmm, mm, addmm: the adapted layers, their gradients and the small B A products),
element-wise work (activations, residuals, Hadamard products and their gradients, copies), the Fourier features
(sin, cos, cat), the optimiser, and the rest; the table gives each bucket's share of the step.

Run: `python benchmarks/profile_fit_step.py [--width 128] [--steps 5]`.
"""

from __future__ import annotations

import argparse
import time
from collections import defaultdict

import torch
from torch.profiler import ProfilerActivity, profile

from hf_wlora.data import GlyphImages
from hf_wlora.fields import NeuralFieldConfig, NeuralFieldModel, image_coordinates
from hf_wlora.representations import FitSettings, fit_instances, make_representation

BUCKETS = {
    "matmul": ("aten::bmm", "aten::baddbmm", "aten::mm", "aten::addmm"),
    "Fourier features": ("aten::sin", "aten::cos", "aten::cat"),
    "element-wise": (
        "aten::mul",
        "aten::mul_",
        "aten::add",
        "aten::add_",
        "aten::sub",
        "aten::leaky_relu",
        "aten::leaky_relu_backward",
        "aten::sigmoid",
        "aten::sigmoid_backward",
        "aten::where",
        "aten::masked_fill_",
        "aten::copy_",
        "aten::pow",
        "aten::mean",
        "aten::sum",
        "aten::fill_",
        "aten::zero_",
        "aten::lerp_",
    ),
}


def bucket(name: str) -> str:
    if name.startswith("Optimizer.") or name in ("aten::addcdiv_", "aten::addcmul_", "aten::sqrt", "aten::div_"):
        return "optimiser"
    return next((label for label, names in BUCKETS.items() if name in names), "other")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--width", type=int, default=128)
    parser.add_argument("--steps", type=int, default=5)
    args = parser.parse_args()
    torch.manual_seed(0)
    field = NeuralFieldModel(NeuralFieldConfig(modality="image", hidden_size=args.width)).bake().requires_grad_(False)
    representation = make_representation("mlora_asym", field, rank=4)
    data = GlyphImages(num_instances=64, resolution=32, seed=0)
    targets = torch.stack([torch.as_tensor(data[i].image).reshape(-1, 3) for i in range(len(data))])
    coords = image_coordinates(32, 32)
    settings = FitSettings(steps=args.steps, learning_rate=1e-2, points_per_step=256)
    fit_instances(representation, coords, targets, settings)  # warm-up
    start = time.perf_counter()
    fit_instances(representation, coords, targets, settings)
    step_ms = 1e3 * (time.perf_counter() - start) / args.steps
    with profile(activities=[ProfilerActivity.CPU]) as profiler:
        fit_instances(representation, coords, targets, settings)
    totals: dict[str, float] = defaultdict(float)
    for event in profiler.key_averages():
        totals[bucket(event.key)] += event.self_cpu_time_total
    whole = sum(totals.values())
    print(f"{args.width} wide, {torch.get_num_threads()} threads: {step_ms:.1f} ms per step (unprofiled)")
    print("| work | share of the step |")
    print("|---|---|")
    for label, total in sorted(totals.items(), key=lambda item: -item[1]):
        print(f"| {label} | {total / whole:.0%} |")


if __name__ == "__main__":
    main()
