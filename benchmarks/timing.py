"""Timing helpers shared by the benchmark scripts (run as `python benchmarks/NAME.py`, so this folder is on the path).

Ratios between paths are what the benchmarks report, since the machines are noisy: `best_times` takes the paths in
turn within each round, so a drift in the machine's speed slows every path alike.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable

import torch


def synchronize(device: torch.device) -> None:
    """Wait for the device's queued work (a no-op on a CPU), so a timer sees the work and not its launch."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def timed(function: Callable[[], object], device: torch.device) -> float:
    """Seconds one call of `function` takes on `device`."""
    synchronize(device)
    start = time.perf_counter()
    function()
    synchronize(device)
    return time.perf_counter() - start


def best_times(functions: dict[str, Callable[[], object]], repeats: int, device: torch.device) -> dict[str, float]:
    """The fastest of `repeats` calls of each function after one warm-up call, the functions taken in turn within
    each round."""
    for function in functions.values():
        function()
    best = {name: math.inf for name in functions}
    for _ in range(repeats):
        for name, function in functions.items():
            best[name] = min(best[name], timed(function, device))
    return best


def matmul_flops(device: torch.device, repeats: int = 3) -> float:
    """FLOP/s of a dense float32 matmul on `device` (2048^3 on a CPU, 8192^3 on a GPU): the practical peak that
    the benchmarks' useful FLOP/s are compared with, measured in the same process."""
    size = 2048 if device.type == "cpu" else 8192
    a, b = torch.randn(size, size, device=device), torch.randn(size, size, device=device)
    return 2 * size**3 / best_times({"matmul": lambda: a @ b}, repeats, device)["matmul"]
