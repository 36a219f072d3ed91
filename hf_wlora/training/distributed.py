"""Launch guards shared by every stage that runs under `accelerate launch` (field training, encoding, generator
training)."""

from __future__ import annotations

import logging
import os
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from accelerate import Accelerator, PartialState

logger = logging.getLogger(__name__)


def check_world_size(state: Accelerator | PartialState) -> None:
    """Fail when the launcher started more processes than Accelerate sees (e.g. CPU-mode `--multi_gpu` without
    `ACCELERATE_USE_CPU=1` runs independent copies that would all write the same outputs)."""
    expected = os.environ.get("WORLD_SIZE")
    if expected is not None and int(expected) != state.num_processes:
        raise RuntimeError(
            f"WORLD_SIZE={expected} processes were launched but the Accelerator sees {state.num_processes}: the "
            "processes are not one distributed run. On CPU launch with `ACCELERATE_USE_CPU=1 accelerate launch "
            "--multi_gpu --num_processes N ...`; on GPUs check `accelerate config`."
        )


def global_batch_size(requested: int, num_instances: int, num_processes: int, where: str = "batch_size") -> int:
    """The global batch size of a step: at most the number of instances, and a multiple of the process count."""
    size = min(requested, num_instances)
    if size < requested:
        logger.warning("%s %d > %d instances; using %d", where, requested, num_instances, size)
    if size % num_processes:
        raise ValueError(
            f"{where}: the batch size {size} does not split evenly over {num_processes} processes; choose a multiple "
            "of the number of processes."
        )
    return size


__all__ = ["check_world_size", "global_batch_size"]
