"""The progressive schedule of stage 1: which stage a global step belongs to.

Like every draw of a step (`hf_wlora.training.schedule`), it is recomputed from the global step, so a resumed run
needs no schedule state.
"""

from __future__ import annotations

from collections.abc import Sequence

from .config import StageConfig


def stage_at(stages: Sequence[StageConfig], step: int) -> tuple[int, int]:
    """(stage index, step within that stage) of global step `step` (0-based)."""
    start = 0
    for index, stage in enumerate(stages):
        if step < start + stage.steps:
            return index, step - start
        start += stage.steps
    raise ValueError(f"step {step} is past the end of the schedule ({start} steps)")


__all__ = ["stage_at"]
