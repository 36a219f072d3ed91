"""Checkpoints of a training run (stage 1 or 3): `output_dir/checkpoints/step-XXXXXX`, atomic, the last K kept.

A checkpoint is `accelerator.save_state`'s folder (the model as safetensors; the optimiser and RNG states, which
Accelerate reads back with `torch.load(weights_only=True)`) plus two files of ours: the EMA as `ema.safetensors`
and `TrainingProgress` as `training_progress.json`. Nothing is registered with `register_for_checkpointing`, since
Accelerate unpickles such objects in full and a tampered checkpoint could run code.

A checkpoint is written to `step-XXXXXX.tmp`, its files flushed to disk, and renamed when complete, so a run killed
(or a machine switched off) while saving never resumes from half a checkpoint. A newest checkpoint that cannot be
read all the same (a truncated file, an emptied folder) is skipped with a warning for the one before it.
"""

from __future__ import annotations

import json
import logging
import re
import shutil
from pathlib import Path
from typing import Any

import torch
from accelerate import Accelerator
from safetensors import safe_open
from safetensors.torch import save_file

from ..differences import setting_differences
from ..files import commit_path
from .ema import ModelEMA

logger = logging.getLogger(__name__)

_CHECKPOINT_NAME = re.compile(r"step-(\d{6,})")
EMA_FILE = "ema.safetensors"
PROGRESS_FILE = "training_progress.json"


class CheckpointError(ValueError):
    """A checkpoint folder cannot be read (missing, truncated or foreign files)."""


class TrainingProgress:
    """The run's position and the settings it was started with, saved in every checkpoint.

    Attributes:
        step: optimiser steps done (the stage and data order are recomputed from it).
        train_time_s: training wall time summed over the invocations of the run.
        fingerprint: the settings that change the numbers (all but run control such as output_dir); a resume with
            other values is refused, since it could not reproduce the uninterrupted run.
        defaults: the settings' default values. A setting that a checkpoint's fingerprint lacks was added to the
            library after the checkpoint was written, which then ran as its default does: resuming with the
            default is the same run, with another value it is refused. This holds for top-level settings with a
            declared default (a nested one, such as a stage's, is still refused, and so is one whose default is
            worked out from the others: both safe), and assumes a setting never moves out of run control, whose
            keys a fingerprint leaves out on purpose.
    """

    def __init__(self, fingerprint: dict[str, Any], defaults: dict[str, Any] | None = None) -> None:
        self.step = 0
        self.train_time_s = 0.0
        self.fingerprint = json.loads(json.dumps(fingerprint))  # as it reads back from JSON (tuples as lists)
        self.defaults = json.loads(json.dumps(defaults or {}))

    def state_dict(self) -> dict[str, Any]:
        return {"step": self.step, "train_time_s": self.train_time_s, "fingerprint": self.fingerprint}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        missing = self.fingerprint.keys() - state["fingerprint"].keys()
        added_since = {key: self.defaults[key] for key in missing if key in self.defaults}
        changed = setting_differences({**added_since, **state["fingerprint"]}, self.fingerprint)
        if changed:
            raise ValueError(
                f"cannot resume: the checkpoint was written with other settings ({'; '.join(changed)}). Resume with "
                "the original config, or train into a new output_dir."
            )
        if added_since:
            logger.warning(
                "The checkpoint predates the settings %s; resuming with their defaults, which it ran as.",
                ", ".join(f"{key}={value!r}" for key, value in sorted(added_since.items())),
            )
        self.step = int(state["step"])
        self.train_time_s = float(state["train_time_s"])


def list_checkpoints(root: Path) -> list[Path]:
    """Completed checkpoints under `root`, oldest first."""
    if not root.is_dir():
        return []
    found = [path for path in root.iterdir() if path.is_dir() and _CHECKPOINT_NAME.fullmatch(path.name)]
    return sorted(found, key=lambda path: int(path.name.split("-")[1]))


def checkpoint_to_resume(output_dir: Path, root: Path, resume: bool) -> list[Path]:
    """The checkpoints under `root` to try when resuming, newest first (empty for a new run); refuses to overwrite a
    run that was not asked to resume."""
    checkpoints = list_checkpoints(root)
    if checkpoints and not resume:
        raise ValueError(
            f"{output_dir} already holds checkpoints (latest {checkpoints[-1].name}): pass --resume to continue that "
            "run, or choose a new output_dir."
        )
    return checkpoints[::-1]


def save_checkpoint(accelerator: Accelerator, root: Path, ema: ModelEMA, progress: TrainingProgress, keep: int) -> Path:
    """Save the accelerator's state, the EMA and the progress at `progress.step` (all processes call this), and
    delete all but the last `keep` checkpoints up to it.

    Checkpoints of later steps are deleted too: the run resumed from an earlier one, so the resume found them
    unreadable and skipped them. Counted among the last `keep`, they would push out the readable ones, down to the
    one just written.
    """
    final = root / f"step-{progress.step:06d}"
    partial = root / f"{final.name}.tmp"
    if accelerator.is_main_process and partial.exists():
        shutil.rmtree(partial)  # left by a run killed while saving
    accelerator.wait_for_everyone()
    accelerator.save_state(str(partial))
    accelerator.wait_for_everyone()
    if accelerator.is_main_process:
        state = {name: tensor.contiguous() for name, tensor in ema.module.state_dict().items()}
        save_file(state, partial / EMA_FILE, metadata={"num_updates": str(ema.num_updates)})
        (partial / PROGRESS_FILE).write_text(json.dumps(progress.state_dict(), indent=2, sort_keys=True) + "\n")
        if final.exists():  # the same step saved by an earlier invocation (a resumed run that stopped there)
            shutil.rmtree(final)
        commit_path(partial, final)
        checkpoints = list_checkpoints(root)
        position = checkpoints.index(final)
        for old in checkpoints[: max(0, position + 1 - keep)] + checkpoints[position + 1 :]:
            shutil.rmtree(old)
    accelerator.wait_for_everyone()
    return final


def _read_progress(checkpoint: Path) -> dict[str, Any]:
    path = checkpoint / PROGRESS_FILE
    if not path.is_file():
        pickled = any(checkpoint.glob("custom_checkpoint_*.pkl"))
        why = " (the checkpoint is an earlier hf_wlora's, whose pickled state is never loaded)" if pickled else ""
        raise CheckpointError(f"{path} is missing{why}")
    try:
        state = json.loads(path.read_text())
        int(state["step"]), float(state["train_time_s"]), dict(state["fingerprint"])
    except (ValueError, KeyError, TypeError) as error:
        raise CheckpointError(f"{path} is not a training progress file ({type(error).__name__}: {error})") from error
    return state


def _load_checkpoint(accelerator: Accelerator, checkpoint: Path, ema: ModelEMA, progress: TrainingProgress) -> None:
    """Restore everything a checkpoint holds; `CheckpointError` if a file is missing or unreadable.

    The progress is read first, so a resume with other settings is refused (a plain ValueError) before any weight
    is loaded.
    """
    state = _read_progress(checkpoint)
    progress.load_state_dict(state)
    try:
        accelerator.load_state(str(checkpoint))
        with safe_open(checkpoint / EMA_FILE, framework="pt") as handle:
            ema.module.load_state_dict({name: handle.get_tensor(name) for name in handle.keys()})  # noqa: SIM118
            ema.num_updates = int(handle.metadata()["num_updates"])
    except Exception as error:  # any unreadable file means: try the checkpoint before
        raise CheckpointError(f"{checkpoint} cannot be loaded ({type(error).__name__}: {error})") from error


def _everyone_loaded(accelerator: Accelerator, loaded: bool) -> bool:
    """Whether every process loaded the checkpoint: they must resume from the same one, or they would diverge."""
    flags = accelerator.gather(torch.tensor([int(loaded)], device=accelerator.device))
    return bool(flags.min().item())


def resume_checkpoint(
    accelerator: Accelerator, candidates: list[Path], ema: ModelEMA, progress: TrainingProgress
) -> Path | None:
    """Load the newest of `candidates` (newest first) that every process reads completely, warning about each one
    skipped.

    Returns the checkpoint resumed from (None if there were none); raises a `CheckpointError` naming every
    checkpoint tried if none can be read.
    """
    problems = []
    for checkpoint in candidates:
        try:
            _load_checkpoint(accelerator, checkpoint, ema, progress)
            problem = None
        except CheckpointError as error:
            problem = str(error)
        if _everyone_loaded(accelerator, problem is None):
            return checkpoint
        problem = problem or f"{checkpoint} cannot be loaded by another process"
        logger.warning("Skipping an unreadable checkpoint: %s. Trying the one before it.", problem)
        problems.append(problem)
    if problems:
        raise CheckpointError(
            "No checkpoint can be resumed: " + "; ".join(problems) + ". Delete the damaged checkpoint folders to "
            "start the run afresh, or train into a new output_dir."
        )
    return None


__all__ = [
    "CheckpointError",
    "TrainingProgress",
    "checkpoint_to_resume",
    "list_checkpoints",
    "resume_checkpoint",
    "save_checkpoint",
]
