"""Stage-3 speed: the hierarchical LoRA layer encoder against HyperDiffusion's tensor tokens, at equal parameter count.

Both are `WeightSpaceDiT`s over the same mlora_asym spec, taken from a real baked image field (4 trunk layers, 64
Fourier features), with the same backbone depth, heads and MLP ratio:

- hierarchical: `tokenization="rank"`, one token per rank component of each adapted layer, `--layer-blocks`
                within-layer DiT blocks before and after the backbone (the paper's model);
- baseline:     `tokenization="tensor"`, one token per weight tensor (chunked at `--chunk-size`), the backbone alone
                (HyperDiffusion's tokenisation). Its hidden size is searched over multiples of the head count so
                that its parameter count is the closest to the hierarchical model's (both counts are printed).

Measured for each, in the same run and interleaved (the machines are shared and noisy, so the figure to read is
the hierarchical/baseline ratio):

- training: samples/s of full optimiser steps on a batch of random normalised weight vectors: DDPM `add_noise`,
  forward, MSE against the clean sample (prediction type "sample", as HyperDiffusion), backward, AdamW step; the
  median step time over `--train-steps` timed steps after `--warmup` untimed ones. Also the step's FLOPs per
  sample (matmuls and attention, forward and backward, `torch.utils.flop_counter`) and the FLOP/s achieved, which
  tell compute apart from overhead;
- sampling: wall time of `WeightSpacePipeline(...)(--samples, num_inference_steps=--inference-steps,
  output_type="weights")` (DDPM, no decoding), the median of `--sample-repeats` calls after an untimed 2-step call.

Sizes (`--size`): "demo" (field 64 wide, r = 4, DiT hidden 128, 4 backbone layers, 4 heads: the built-in demo's
scale) and "paper" (field 256 wide, r = 8, DiT hidden 384, 8 layers, 6 heads).

Run: `python benchmarks/bench_generate.py [--size demo|paper] [--device cuda] [--batch-size 64] [--train-steps 20]
[--sample-repeats 5]`; on a shared CPU, prefix `OMP_NUM_THREADS=1`. The paper size takes about 2 minutes on one CPU
core with `--warmup 1 --train-steps 5 --sample-repeats 1`.
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
from collections.abc import Callable
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from diffusers import DDPMScheduler
from timing import timed
from torch.utils.flop_counter import FlopCounterMode

from hf_wlora.encoding import make_representation
from hf_wlora.fields import NeuralFieldConfig, NeuralFieldModel
from hf_wlora.models import WeightSpaceDiT
from hf_wlora.models.tokenization import DEFAULT_CHUNK_SIZE
from hf_wlora.pipelines import WeightSpacePipeline
from hf_wlora.spec import RepresentationSpec

NUM_TRAIN_TIMESTEPS = 1000
LEARNING_RATE = 1e-4
MODELS = ("hierarchical", "baseline")


@dataclass(frozen=True)
class Size:
    field_width: int
    rank: int
    hidden_size: int
    num_layers: int
    num_heads: int


SIZES = {
    "demo": Size(field_width=64, rank=4, hidden_size=128, num_layers=4, num_heads=4),
    "paper": Size(field_width=256, rank=8, hidden_size=384, num_layers=8, num_heads=6),
}


def make_field_and_spec(size: Size) -> tuple[NeuralFieldModel, RepresentationSpec]:
    """A baked image field of the size's width and the mlora_asym spec over it (what users encode into)."""
    config = NeuralFieldConfig(
        modality="image", hidden_size=size.field_width, num_layers=4, num_fourier_features=64, baked=True
    )
    field = NeuralFieldModel(config).requires_grad_(False)
    return field, make_representation("mlora_asym", field, rank=size.rank).spec


def make_model(
    spec: RepresentationSpec, tokenization: str, hidden_size: int, args: argparse.Namespace
) -> WeightSpaceDiT:
    size = SIZES[args.size]
    return WeightSpaceDiT(
        spec.to_dict(),
        tokenization=tokenization,
        chunk_size=args.chunk_size,
        hidden_size=hidden_size,
        num_layers=size.num_layers,
        num_layer_blocks=args.layer_blocks,
        num_heads=size.num_heads,
        mlp_ratio=args.mlp_ratio,
    )


def count_parameters(model: torch.nn.Module) -> int:
    return sum(parameter.numel() for parameter in model.parameters())


def matched_hidden_size(spec: RepresentationSpec, target: int, args: argparse.Namespace) -> int:
    """The multiple of num_heads whose tensor-token model has the parameter count closest to `target`.

    The count grows strictly with the hidden size, so bisect on the multiple, then pick the closer neighbour.
    """
    heads = SIZES[args.size].num_heads

    def count(multiple: int) -> int:
        return count_parameters(make_model(spec, "tensor", multiple * heads, args))

    low, high = 1, 2  # invariant once the loops run: count(low) < target <= count(high), or low = 1
    while count(high) < target:
        low, high = high, 2 * high
    while high - low > 1:
        middle = (low + high) // 2
        low, high = (middle, high) if count(middle) < target else (low, middle)
    best = min((low, high), key=lambda multiple: abs(count(multiple) - target))
    return best * heads


def interleaved_medians(
    functions: dict[str, Callable[[], None]], warmup: int, repeats: int, device: torch.device
) -> dict[str, float]:
    """Median seconds per call of each function, calls alternating between them so noise hits both alike."""
    for _ in range(warmup):
        for function in functions.values():
            function()
    times: dict[str, list[float]] = {name: [] for name in functions}
    for _ in range(repeats):
        for name, function in functions.items():
            times[name].append(timed(function, device))
    return {name: statistics.median(values) for name, values in times.items()}


def make_scheduler() -> DDPMScheduler:
    return DDPMScheduler(
        num_train_timesteps=NUM_TRAIN_TIMESTEPS,
        beta_schedule="squaredcos_cap_v2",
        prediction_type="sample",
        clip_sample=False,
        timestep_spacing="trailing",  # as training builds it
    )


def training_step(model: WeightSpaceDiT, batch_size: int, device: torch.device) -> Callable[[], None]:
    """One optimiser step as `GeneratorTrainer._train_step` takes it, on a pool of random normalised weights."""
    scheduler = make_scheduler()
    optimizer = torch.optim.AdamW(model.parameters(), lr=LEARNING_RATE)
    pool = torch.randn(4 * batch_size, model.num_parameters, device=device).masked_fill(model.frozen_mask, 0.0)
    model.train()

    def step() -> None:
        indices = torch.randint(0, pool.shape[0], (batch_size,), device=device)
        clean = pool[indices]
        noise = torch.randn_like(clean)
        timesteps = torch.randint(0, NUM_TRAIN_TIMESTEPS, (batch_size,), device=device)
        prediction = model(scheduler.add_noise(clean, noise, timesteps), timesteps).sample
        loss = F.mse_loss(prediction, clean)  # prediction type "sample": the target is x0
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()

    return step


def flops_per_sample(step: Callable[[], None], batch_size: int) -> float:
    """FLOPs of one training step (matmuls and attention, forward and backward) per sample; the step also runs."""
    with FlopCounterMode(display=False) as counter:
        step()
    return counter.get_total_flops() / batch_size


def sampling_calls(
    model: WeightSpaceDiT, field: NeuralFieldModel, args: argparse.Namespace, device: torch.device
) -> tuple[Callable[[], None], Callable[[], None]]:
    """Sample `args.samples` weight vectors through the pipeline (no decoding); also a 2-step call to warm up."""
    pipe = WeightSpacePipeline(model.eval(), make_scheduler(), field).to(device)
    pipe.set_progress_bar_config(disable=True)
    generator = torch.Generator(device=device).manual_seed(0)

    def call(steps: int) -> None:
        pipe(args.samples, num_inference_steps=steps, generator=generator, output_type="weights")

    return (lambda: call(args.inference_steps)), (lambda: call(2))


def machine_description(device: torch.device) -> str:
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else platform.processor() or platform.machine()
    return f"machine: {name}, torch {torch.__version__}, {torch.get_num_threads()} threads, device {device}"


def print_table(result: dict, args: argparse.Namespace) -> None:
    rows = [
        ("parameters", "{:,}", "parameters"),
        ("tokens / sample", "{}", "tokens"),
        (f"train samples/s (B={args.batch_size})", "{:.1f}", "train_samples_per_s"),
        ("train ms / step", "{:.1f}", "train_ms_per_step"),
        ("train GFLOP / sample (fwd + bwd)", "{:.3f}", "train_gflop_per_sample"),
        ("train GFLOP/s achieved", "{:.1f}", "train_gflop_per_s"),
        (f"sample {args.samples} x {args.inference_steps} DDPM steps, s", "{:.2f}", "sampling_s"),
    ]
    print(f"{'':38s}{'hierarchical':>15s}{'baseline':>15s} {'hier / base':>12s}")
    for label, number, key in rows:
        values = [result[model][key] for model in MODELS]
        cells = "".join(f"{number.format(value):>15s}" for value in values)
        print(f"{label:38s}{cells} {values[0] / values[1]:>11.3f}x")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", choices=sorted(SIZES), default="demo")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--batch-size", type=int, default=64, help="training batch")
    parser.add_argument("--warmup", type=int, default=3, help="untimed training steps per model")
    parser.add_argument("--train-steps", type=int, default=20, help="timed training steps per model")
    parser.add_argument("--samples", type=int, default=64, help="instances per sampling call")
    parser.add_argument("--inference-steps", type=int, default=50)
    parser.add_argument("--sample-repeats", type=int, default=5, help="timed sampling calls per model")
    parser.add_argument("--layer-blocks", type=int, default=1, help="within-layer blocks (hierarchical only)")
    parser.add_argument("--mlp-ratio", type=float, default=4.0)
    parser.add_argument("--chunk-size", type=int, default=DEFAULT_CHUNK_SIZE, help="largest tensor token (baseline)")
    args = parser.parse_args()
    device = torch.device(args.device)
    size = SIZES[args.size]
    print(machine_description(device))

    torch.manual_seed(0)
    field, spec = make_field_and_spec(size)
    hierarchical = make_model(spec, "rank", size.hidden_size, args)
    baseline_hidden = matched_hidden_size(spec, count_parameters(hierarchical), args)
    models = {"hierarchical": hierarchical, "baseline": make_model(spec, "tensor", baseline_hidden, args)}
    for model in models.values():
        model.to(device)
    hidden_sizes = {"hierarchical": size.hidden_size, "baseline": baseline_hidden}
    print(
        f"size {args.size}: field {size.field_width} wide, mlora_asym r={size.rank}, {spec.num_parameters:,} weights "
        f"per instance; DiT {size.num_layers} backbone layers, {size.num_heads} heads, mlp_ratio {args.mlp_ratio}, "
        f"{args.layer_blocks} within-layer block(s) each side (hierarchical)"
    )
    for name, model in models.items():
        print(f"  {name:12s} hidden {hidden_sizes[name]:4d}, {count_parameters(model):>11,} parameters, {model.tokens}")

    train_steps = {name: training_step(model, args.batch_size, device) for name, model in models.items()}
    flops = {name: flops_per_sample(step, args.batch_size) for name, step in train_steps.items()}
    train_seconds = interleaved_medians(train_steps, args.warmup, args.train_steps, device)
    sampling = {name: sampling_calls(model, field, args, device) for name, model in models.items()}
    for _, warmup_call in sampling.values():
        warmup_call()
    timed_calls = {name: call for name, (call, _) in sampling.items()}
    sampling_seconds = interleaved_medians(timed_calls, 0, args.sample_repeats, device)

    result: dict = {"size": args.size, "device": str(device), "batch_size": args.batch_size}
    for name, model in models.items():
        result[name] = {
            "hidden_size": hidden_sizes[name],
            "parameters": count_parameters(model),
            "tokens": model.tokens.num_groups * model.tokens.group_size,
            "train_ms_per_step": 1e3 * train_seconds[name],
            "train_samples_per_s": args.batch_size / train_seconds[name],
            "train_gflop_per_sample": flops[name] / 1e9,
            "train_gflop_per_s": flops[name] * args.batch_size / train_seconds[name] / 1e9,
            "sampling_s": sampling_seconds[name],
        }
    counts = [result[name]["parameters"] for name in MODELS]
    result["parameter_difference"] = (counts[1] - counts[0]) / counts[0]
    print(f"parameter counts: baseline {result['parameter_difference']:+.2%} relative to hierarchical")
    print_table(result, args)
    print(json.dumps(result))


if __name__ == "__main__":
    main()
