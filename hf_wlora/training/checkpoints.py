"""Checkpoints of a training run (stage 1 or 3): `output_dir/checkpoints/step-XXXXXX`, atomic, the last K kept.

A checkpoint is `accelerator.save_state`'s folder (our own local files: the model as safetensors, the optimiser,
RNG states, and the registered custom objects, e.g. the EMA and `TrainingProgress`). It is written to
`step-XXXXXX.tmp` and renamed when complete, so a run killed while saving never resumes from half a checkpoint.
"""

from __future__ import annotations

import re
import shutil
from pathlib import Path
from typing import Any

from accelerate import Accelerator

_CHECKPOINT_NAME = re.compile(r"step-(\d{6,})")


class TrainingProgress:
    """The run's position and the settings it was started with, saved in every checkpoint.

    Attributes:
        step: optimiser steps done (the stage and data order are recomputed from it).
        train_time_s: training wall time summed over the invocations of the run.
        fingerprint: the settings that change the numbers (all but run control such as output_dir); a resume with
            other values is refused, since it could not reproduce the uninterrupted run.
    """

    def __init__(self, fingerprint: dict[str, Any]) -> None:
        self.step = 0
        self.train_time_s = 0.0
        self.fingerprint = fingerprint

    def state_dict(self) -> dict[str, Any]:
        return {"step": self.step, "train_time_s": self.train_time_s, "fingerprint": self.fingerprint}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        changed = sorted(
            key
            for key in set(state["fingerprint"]) | set(self.fingerprint)
            if state["fingerprint"].get(key) != self.fingerprint.get(key)
        )
        if changed:
            details = "; ".join(
                f"{key}: {state['fingerprint'].get(key)!r} -> {self.fingerprint.get(key)!r}" for key in changed
            )
            raise ValueError(
                f"cannot resume: the checkpoint was written with other settings ({details}). Resume with the "
                "original config, or train into a new output_dir."
            )
        self.step = int(state["step"])
        self.train_time_s = float(state["train_time_s"])


def list_checkpoints(root: Path) -> list[Path]:
    """Completed checkpoints under `root`, oldest first."""
    if not root.is_dir():
        return []
    found = [path for path in root.iterdir() if path.is_dir() and _CHECKPOINT_NAME.fullmatch(path.name)]
    return sorted(found, key=lambda path: int(path.name.split("-")[1]))


def checkpoint_to_resume(output_dir: Path, root: Path, resume: bool) -> Path | None:
    """The latest checkpoint under `root` when resuming; refuses to overwrite a run that was not asked to resume."""
    checkpoints = list_checkpoints(root)
    if checkpoints and not resume:
        raise ValueError(
            f"{output_dir} already holds checkpoints (latest {checkpoints[-1].name}): pass --resume to continue that "
            "run, or choose a new output_dir."
        )
    return checkpoints[-1] if checkpoints else None


def save_checkpoint(accelerator: Accelerator, root: Path, step: int, keep: int) -> Path:
    """Save the accelerator's state at `step` (all processes call this) and delete all but the last `keep`."""
    final = root / f"step-{step:06d}"
    partial = root / f"{final.name}.tmp"
    if accelerator.is_main_process and partial.exists():
        shutil.rmtree(partial)  # left by a run killed while saving
    accelerator.wait_for_everyone()
    accelerator.save_state(str(partial))
    accelerator.wait_for_everyone()
    if accelerator.is_main_process:
        if final.exists():  # the same step saved by an earlier invocation (a resumed run that stopped there)
            shutil.rmtree(final)
        partial.rename(final)
        for old in list_checkpoints(root)[:-keep]:
            shutil.rmtree(old)
    accelerator.wait_for_everyone()
    return final


__all__ = ["TrainingProgress", "checkpoint_to_resume", "list_checkpoints", "save_checkpoint"]
