"""`TrainingLoop`: the skeleton that the stage-1 (field) and stage-3 (generator) trainers share, by composition.

A trainer keeps what is its own, the step (what it draws, its loss) and the export, and reads top to bottom:

    loop = TrainingLoop(config, config.total_steps, "hf_wlora-field")  # Accelerator, checkpoint to resume
    ...                                                                # data, model and optimiser
    model = loop.prepare(model, optimizer)                             # + EMA, restored when resuming
    for step in loop.steps():                                          # checkpoints between steps
        loss = ...  # the step's draws for the global batch, this process's `process_share`, forward
        loop.optimizer_step(loss, learning_rates)
        if loop.is_log_step(step):
            loop.log(step, reduced_losses)

Every number of a step is a function of (seed, step) (`step_draws`) and the learning rate is set from the step, so
the loop's only state is the model, optimiser, EMA and `TrainingProgress`: what a checkpoint restores.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any, TypeVar

import torch
from accelerate import Accelerator
from torch import nn
from tqdm.auto import tqdm

from .checkpoints import TrainingProgress, checkpoint_to_resume, resume_checkpoint, save_checkpoint
from .distributed import check_world_size
from .ema import ModelEMA

logger = logging.getLogger(__name__)

Model = TypeVar("Model", bound=nn.Module)


def process_share(accelerator: Accelerator, batch_size: int) -> slice:
    """This process's slice of a global batch of `batch_size` (a multiple of the process count).

    A step draws everything for the global batch and each process trains on its slice, so a run's numbers do not
    depend on how many processes share it.
    """
    share = batch_size // accelerator.num_processes
    return slice(accelerator.process_index * share, (accelerator.process_index + 1) * share)


class TrainingLoop:
    """Setup, optimiser step and loop of one training run, for a trainer to hold.

    Attributes:
        config: the stage's training config (its run settings checked by `check_run_settings`).
        accelerator: the run's `Accelerator` (mixed precision, trackers and project folder from the config).
        output_dir: the run's folder; checkpoints go to `output_dir/checkpoints`.
        stop: the global step this invocation stops at: the schedule's end, or `max_steps`.
        progress: the step and training time, saved in every checkpoint.
        started: `time.perf_counter()` when the run was set up, for the wall time.
    """

    def __init__(self, config: Any, total_steps: int, tracker: str) -> None:
        """Start the Accelerator and find the checkpoint to resume (before anything slow is loaded, so a run that
        would overwrite another fails at once). `tracker` names the run for `config.log_with`."""
        self.started = time.perf_counter()
        self.config = config
        self.tracker = tracker
        self.output_dir = Path(config.output_dir)
        self.checkpoint_root = self.output_dir / "checkpoints"
        self.stop = min(total_steps, config.max_steps or total_steps)
        self.accelerator = Accelerator(
            mixed_precision=config.mixed_precision, log_with=config.log_with or None, project_dir=str(self.output_dir)
        )
        check_world_size(self.accelerator)
        self.resume_candidates = checkpoint_to_resume(self.output_dir, self.checkpoint_root, config.resume)
        self.progress = TrainingProgress(config.fingerprint(), config.setting_defaults())

    def prepare(self, model: Model, optimizer: torch.optim.Optimizer, averaged: nn.Module | None = None) -> Model:
        """Hand `model` and `optimizer` to Accelerate, start the EMA of `averaged` (the part of `model` that is
        exported; default all of it) and, when resuming, restore all of them and the progress from the checkpoint.

        Returns the model to call in the step (on the device, wrapped for distributed training).
        """
        self.model, self.optimizer = self.accelerator.prepare(model, optimizer)
        self.averaged = model if averaged is None else averaged
        self.ema = ModelEMA(self.averaged, self.config.ema_decay)
        resumed = resume_checkpoint(self.accelerator, self.resume_candidates, self.ema, self.progress)
        if resumed is not None:
            logger.info("resumed from %s at step %d", resumed, self.progress.step)
        return self.model

    def optimizer_step(self, loss: torch.Tensor, learning_rates: Sequence[float]) -> None:
        """Minimise `loss` by one step at `learning_rates` (one per parameter group), then move the EMA.

        The learning rates are the caller's function of the step, like everything else, so resuming needs no
        scheduler state. Gradients are clipped to `config.max_grad_norm` when it is set.
        """
        for group, learning_rate in zip(self.optimizer.param_groups, learning_rates, strict=True):
            group["lr"] = learning_rate
        self.optimizer.zero_grad(set_to_none=True)
        self.accelerator.backward(loss)
        if self.config.max_grad_norm is not None:
            self.accelerator.clip_grad_norm_(self.model.parameters(), self.config.max_grad_norm)
        self.optimizer.step()
        self.ema.update(self.averaged)

    def steps(self) -> Iterator[int]:
        """The global steps left to take (0-based), from the resumed one up to `stop`.

        First the main process writes `output_dir/training_config.yaml` and the trackers start. Each time the
        caller's body for a step is done, the step is counted and, every `checkpoint_every` steps and at `stop`, a
        checkpoint is saved with the training time so far (the time spent writing checkpoints is not counted). An
        exception in the body stops the run like a crash: the last checkpoint can be resumed.
        """
        config, accelerator = self.config, self.accelerator
        if accelerator.is_main_process:
            self.output_dir.mkdir(parents=True, exist_ok=True)
            config.to_yaml(self.output_dir / "training_config.yaml")
        if config.log_with:
            accelerator.init_trackers(self.tracker, config={k: str(v) for k, v in config.to_dict().items()})
        self.bar = tqdm(total=self.stop, initial=self.progress.step, disable=not accelerator.is_local_main_process)
        segment_start = time.perf_counter()
        while self.progress.step < self.stop:
            yield self.progress.step
            self.progress.step += 1
            self.bar.update(1)
            if self.progress.step % config.checkpoint_every == 0 or self.progress.step == self.stop:
                self.progress.train_time_s += time.perf_counter() - segment_start
                save_checkpoint(accelerator, self.checkpoint_root, self.ema, self.progress, config.keep_checkpoints)
                segment_start = time.perf_counter()
        self.bar.close()
        self.progress.train_time_s += time.perf_counter() - segment_start

    def is_log_step(self, step: int) -> bool:
        """Whether `step` (0-based) ends a logging interval: every `log_every` steps, and the last step."""
        return (step + 1) % self.config.log_every == 0 or step + 1 == self.stop

    def log(self, step: int, values: dict[str, float]) -> None:
        """Show `values` (already averaged over the processes) on the progress bar and send them to the trackers as
        those of global step `step + 1`, the number of steps done."""
        self.bar.set_postfix({key: f"{value:.4g}" for key, value in values.items()})
        self.accelerator.log(values, step=step + 1)


__all__ = ["TrainingLoop", "process_share"]
