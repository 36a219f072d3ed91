"""Fine-tuning steps of a Llama-style model with mLoRA, mLoRA-Asym, LoRA and HiRA: step time and memory vs LoRA.

The model is built from a config (no download): `--layers` decoder layers, `--width` hidden size, SwiGLU MLP of
`--intermediate` width, a small vocabulary so that the adapted projections dominate. Every method adapts the same
seven projections per layer (q, k, v, o, gate, up, down) at the same rank, and trains with AdamW on a fixed batch.

Each method runs in its own process (so that the peak resident memory is its own), in an interleaved order over
`--rounds` rounds; the step time is the median over rounds of each round's best step. Reported per method:
milliseconds per step, the bytes autograd saves for backward in one step (exact, from saved-tensor hooks), the
peak memory of training (on CPU the growth of peak resident memory over the
process's after building the model; on CUDA the peak allocated), and each as a ratio to LoRA's.

Run: `OMP_NUM_THREADS=2 python benchmarks/bench_peft.py [--device cuda] [--rounds 3]`.
"""

from __future__ import annotations

import argparse
import json
import platform
import resource
import statistics
import subprocess
import sys
import time

import torch
from peft import PeftConfig

METHODS = ("lora", "hira", "mlora", "mlora_asym")
TARGETS = ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]


def peft_config(method: str, rank: int) -> PeftConfig:
    """The PEFT config of one method on the shared targets and rank."""
    from peft import HiraConfig, LoraConfig

    import hf_wlora

    if method == "lora":
        return LoraConfig(r=rank, lora_alpha=rank, target_modules=TARGETS)
    if method == "hira":
        return HiraConfig(r=rank, target_modules=TARGETS)
    return hf_wlora.MLoraConfig(r=rank, target_modules=TARGETS, asymmetric_mask=method == "mlora_asym")


def peak_rss_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux reports KiB


def run_method(args: argparse.Namespace) -> dict[str, float]:
    """Time `args.steps` training steps of one method in this process."""
    from peft import get_peft_model
    from transformers import LlamaConfig, LlamaForCausalLM

    device = torch.device(args.device)
    torch.manual_seed(0)
    config = LlamaConfig(
        vocab_size=args.vocab,
        hidden_size=args.width,
        intermediate_size=args.intermediate,
        num_hidden_layers=args.layers,
        num_attention_heads=args.width // 64,
        num_key_value_heads=args.width // 64,
        max_position_embeddings=args.sequence,
    )
    model = get_peft_model(LlamaForCausalLM(config), peft_config(args.method, args.rank)).to(device)
    model.train()
    rss_model = peak_rss_mib()  # the process so far: the model, its adapters, the libraries
    tokens = torch.randint(0, args.vocab, (args.batch, args.sequence), device=device)
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-4)

    def step() -> None:
        optimizer.zero_grad(set_to_none=True)
        model(input_ids=tokens, labels=tokens).loss.backward()
        optimizer.step()

    saved_bytes = 0

    def count(tensor: torch.Tensor) -> torch.Tensor:
        nonlocal saved_bytes
        saved_bytes += tensor.numel() * tensor.element_size()
        return tensor

    step()  # warm-up (allocator, kernels)
    with torch.autograd.graph.saved_tensors_hooks(count, lambda tensor: tensor):
        step()
    times = []
    for _ in range(args.steps):
        start = time.perf_counter()
        step()
        if device.type == "cuda":
            torch.cuda.synchronize()
        times.append(time.perf_counter() - start)
    peak = torch.cuda.max_memory_allocated() / 2**20 if device.type == "cuda" else peak_rss_mib() - rss_model
    return {"ms": 1000 * min(times), "saved_mib": saved_bytes / 2**20, "peak_mib": peak}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--layers", type=int, default=8)
    parser.add_argument("--width", type=int, default=512)
    parser.add_argument("--intermediate", type=int, default=1376)
    parser.add_argument("--vocab", type=int, default=1000)
    parser.add_argument("--batch", type=int, default=4)
    parser.add_argument("--sequence", type=int, default=128)
    parser.add_argument("--rank", type=int, default=8)
    parser.add_argument("--steps", type=int, default=5)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--method", choices=METHODS, help=argparse.SUPPRESS)  # one method, in a child process
    args = parser.parse_args()
    if args.method:
        print(json.dumps(run_method(args)))
        return

    forwarded = sys.argv[1:]
    results: dict[str, list[dict[str, float]]] = {method: [] for method in METHODS}
    for _ in range(args.rounds):
        for method in METHODS:
            output = subprocess.run(
                [sys.executable, __file__, *forwarded, "--method", method], capture_output=True, text=True, check=True
            ).stdout
            results[method].append(json.loads(output.strip().splitlines()[-1]))
    summary = {
        method: {key: statistics.median(run[key] for run in runs) for key in runs[0]}
        for method, runs in results.items()
    }
    lora = summary["lora"]
    print(
        f"Llama-style {args.layers} x {args.width} (MLP {args.intermediate}), batch {args.batch} x {args.sequence} "
        f"tokens, rank {args.rank}, {len(TARGETS)} projections per layer; device {args.device}, torch "
        f"{torch.__version__}, {platform.processor() or platform.machine()}, {torch.get_num_threads()} threads"
    )
    columns = ["ms / step", "saved for backward (MiB)", "peak training memory (MiB)"]
    print("| method | " + " | ".join(f"{column} | vs LoRA" for column in columns) + " |")
    print("|---|---|---|---|---|---|---|")
    for method, row in summary.items():
        print(
            f"| {method} | {row['ms']:.1f} | {row['ms'] / lora['ms']:.2f}x | {row['saved_mib']:.1f} | "
            f"{row['saved_mib'] / lora['saved_mib']:.2f}x | {row['peak_mib']:.0f} | "
            f"{row['peak_mib'] / max(lora['peak_mib'], 1e-9):.2f}x |"
        )


if __name__ == "__main__":
    main()
