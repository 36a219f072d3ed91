"""`train_field`: stage 1, the variational auto-decoder, with Accelerate (CPU, one GPU, or `accelerate launch`).

Read top to bottom: set up (data, model, optimiser, EMA, resume), loop over the progressive schedule, export. The
setup, optimiser step, loop and checkpoints are `hf_wlora.training.loop.TrainingLoop`'s, shared with stage 3.

Per step: the step's instances and random draws come from `hf_wlora.training.step_draws` (pure functions of the seed
and the step); each process takes its share of the global batch, decodes z = mu + sigma * eps at the stage's
coordinates, and minimises reconstruction + kl_weight * KL; Accelerate averages the gradients. After the optimiser
step the EMA of the field moves. Checkpoints restore model, optimiser, EMA, step and (through the step) the schedule
position and data order, so a run resumed after a crash ends with the same weights as one that never stopped.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from ...metrics import psnr_from_mse
from ...training.distributed import global_batch_size
from ...training.loop import TrainingLoop, process_share
from ...training.step_draws import batch_instances, lr_factor, step_generator
from ..modeling_neural_field import NeuralFieldModel
from .card import field_card_template, write_field_card
from .codes import AutoDecoder, VariationalCodes
from .config import FieldTrainingConfig, stage_at
from .data import ImageTrainingData, ShapeTrainingData, build_training_data
from .evaluate import image_psnr, shape_chamfer

StepCallback = Callable[[int, dict[str, float]], None]


@dataclass
class FieldTrainingResult:
    """Where a run wrote its outputs, and its final metrics.

    Attributes:
        output_dir: the run's folder.
        field_dir: the baked EMA base field (`NeuralFieldModel.from_pretrained(field_dir)`), with its card.
        modulated_field_dir: the full modulated EMA field, with its card.
        codes_path: `codes.safetensors`: `mu` and `logvar` (N, latent_dim) and `labels` (N,); the instance ids are
            in the file's metadata (`ids`, a JSON list).
        metrics_path: `metrics.json`, the same values as `metrics`.
        metrics: final PSNR (images) or Chamfer distance (shapes) of the EMA field at z = mu, steps, and times:
            `train_time_s` (the training loop, summed over resumed invocations) and `wall_time_s` (this invocation
            from setup to the end of training; the final evaluation and export are not included).
        step: the global step the run stopped at.
    """

    output_dir: Path
    field_dir: Path
    modulated_field_dir: Path
    codes_path: Path
    metrics_path: Path
    metrics: dict[str, Any]
    step: int


def _build_model(config: FieldTrainingConfig, num_instances: int) -> AutoDecoder:
    field_config = config.field_config()
    # Fork the global RNG so the run's init depends on config.seed only and the caller's RNG is left as it was.
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(config.seed)
        field = NeuralFieldModel(field_config)
        codes = VariationalCodes(num_instances, field_config.latent_dim, config.code_init_std, config.code_init_logvar)
    return AutoDecoder(field, codes)


def _batch_sizes(config: FieldTrainingConfig, num_instances: int, num_processes: int) -> list[int]:
    """Global batch size of each stage: at most the number of instances, and a multiple of the process count."""
    return [
        global_batch_size(stage.batch_size, num_instances, num_processes, where=f"stages[{index}].batch_size")
        for index, stage in enumerate(config.stages)
    ]


class FieldTrainer:
    """One stage-1 run. `train_field(config)` is the usual entry point; this class keeps the pieces together."""

    def __init__(self, config: FieldTrainingConfig, on_step: StepCallback | None = None) -> None:
        self.config = config
        self.on_step = on_step
        field_card_template()  # fail now rather than after training
        self.loop = TrainingLoop(config, config.total_steps, tracker="hf_wlora-field")
        self.accelerator = self.loop.accelerator

        with self.accelerator.main_process_first():  # the main process draws and caches SDF samples first
            self.data: ImageTrainingData | ShapeTrainingData = build_training_data(
                config, self.accelerator.device, self.accelerator.is_main_process
            )
        self.batch_sizes = _batch_sizes(config, len(self.data), self.accelerator.num_processes)

        model = _build_model(config, len(self.data))
        optimizer = torch.optim.Adam(
            [
                {"params": model.field.parameters(), "lr": config.lr_field},
                {"params": model.codes.parameters(), "lr": config.lr_codes},
            ],
            betas=config.adam_betas,
        )
        self.model = self.loop.prepare(model, optimizer, averaged=model.field)  # the EMA field is exported

    @property
    def _unwrapped(self) -> AutoDecoder:
        return self.accelerator.unwrap_model(self.model)

    def train(self) -> FieldTrainingResult:
        loop = self.loop
        for step in loop.steps():
            losses = self._train_step(step)
            is_log_step = loop.is_log_step(step)
            if is_log_step or self.on_step is not None:  # reading the losses waits for the device: only when needed
                logs = self._logs(step, losses)
            if is_log_step:
                loop.log(step, self._reduce(logs))
            if self.on_step is not None:
                self.on_step(step + 1, logs)
        result = self._export(wall_time_s=time.perf_counter() - loop.started)
        self.accelerator.end_training()
        return result

    def _train_step(self, step: int) -> dict[str, torch.Tensor]:
        """One optimiser step at global `step`; returns this process's losses as tensors (still on the device)."""
        config, accelerator = self.config, self.accelerator
        stage_index, step_in_stage = stage_at(config.stages, step)
        stage, batch_size = config.stages[stage_index], self.batch_sizes[stage_index]
        # Draw for the global batch, then take this process's share: the numbers do not depend on the world size.
        generator = step_generator(config.seed, step)
        indices = batch_instances(len(self.data), batch_size, config.seed, stage_index, step_in_stage)
        eps = torch.randn(batch_size, self._unwrapped.codes.latent_dim, generator=generator)
        selection = self.data.point_selection(stage, batch_size, generator)
        local = process_share(accelerator, batch_size)
        device = accelerator.device
        indices, eps = indices[local].to(device), eps[local].to(device)
        batch = self.data.batch(stage, indices, None if selection is None else selection[local].to(device))

        with accelerator.autocast():
            predictions, kl = self.model(indices, batch.coords, eps)
        reconstruction = self.data.loss(predictions, batch.targets)
        kl = kl.float().mean()
        loss = reconstruction + config.kl_weight * kl
        factor = lr_factor(step, config.total_steps, config.lr_schedule, config.min_lr_ratio)
        self.loop.optimizer_step(loss, [config.lr_field * factor, config.lr_codes * factor])
        return {"loss": loss.detach(), "reconstruction": reconstruction.detach(), "kl": kl.detach()}

    def _logs(self, step: int, losses: dict[str, torch.Tensor]) -> dict[str, float]:
        """This process's losses of `step` as floats, with the stage and (images) the batch PSNR."""
        logs = {key: float(value) for key, value in losses.items()}
        logs["stage"] = float(stage_at(self.config.stages, step)[0])
        if self.data.modality == "image":
            logs["psnr"] = float(psnr_from_mse(logs["reconstruction"]))
        return logs

    def _reduce(self, logs: dict[str, float]) -> dict[str, float]:
        """Average the per-process losses (PSNR recomputed from the mean reconstruction error)."""
        keys = ["loss", "reconstruction", "kl"]
        values = torch.tensor([logs[key] for key in keys], device=self.accelerator.device)
        values = self.accelerator.reduce(values, reduction="mean").tolist()
        reduced = dict(zip(keys, values, strict=True))
        reduced["stage"] = logs["stage"]
        if self.data.modality == "image":
            reduced["psnr"] = float(psnr_from_mse(reduced["reconstruction"]))
        return reduced

    def _evaluate(self, field: NeuralFieldModel, mu: torch.Tensor) -> dict[str, Any]:
        config = self.config
        if isinstance(self.data, ImageTrainingData):
            return {"psnr": image_psnr(field, mu, self.data)}
        metrics = shape_chamfer(
            field, mu, self.data, config.eval_instances, config.eval_resolution, config.eval_points, config.seed
        )
        return {**metrics, "eval_resolution": config.eval_resolution}

    def _export(self, wall_time_s: float) -> FieldTrainingResult:
        """Evaluate the EMA field and write field/, modulated_field/, codes.safetensors and metrics.json."""
        from safetensors.torch import save_file

        accelerator, config, progress = self.accelerator, self.config, self.loop.progress
        out = self.loop.output_dir
        result = FieldTrainingResult(
            output_dir=out,
            field_dir=out / "field",
            modulated_field_dir=out / "modulated_field",
            codes_path=out / "codes.safetensors",
            metrics_path=out / "metrics.json",
            metrics={},
            step=progress.step,
        )
        accelerator.wait_for_everyone()
        if accelerator.is_main_process:
            field = self.loop.ema.module
            codes = self._unwrapped.codes
            mu = codes.mu.weight.detach()
            result.metrics = {
                "modality": self.data.modality,
                **self._evaluate(field, mu),
                "num_instances": len(self.data),
                "steps": progress.step,
                "train_time_s": round(progress.train_time_s, 2),
                "wall_time_s": round(wall_time_s, 2),
                "num_processes": accelerator.num_processes,
                "device": str(accelerator.device),
            }
            card = {
                "config": config,
                "metrics": result.metrics,
                "num_classes": len(self.data.class_names),
                "hardware": f"{accelerator.num_processes} x {accelerator.device.type}",
                "codes_path": result.codes_path,
            }
            field.save_pretrained(result.modulated_field_dir)
            write_field_card(result.modulated_field_dir, baked=False, field=field, **card)
            baked = field.bake()
            baked.save_pretrained(result.field_dir)
            write_field_card(result.field_dir, baked=True, field=baked, **card)
            tensors = {
                "mu": mu.float().cpu().contiguous(),
                "logvar": codes.logvar.weight.detach().float().cpu().contiguous(),
                "labels": self.data.labels.cpu(),
            }
            save_file(tensors, str(result.codes_path), metadata={"ids": json.dumps(self.data.ids)})
            result.metrics_path.write_text(json.dumps(result.metrics, indent=2) + "\n")
        accelerator.wait_for_everyone()
        return result


def train_field(config: FieldTrainingConfig, on_step: StepCallback | None = None) -> FieldTrainingResult:
    """Train a field as a variational auto-decoder on `config.data` and export it (see `FieldTrainingConfig`).

    Args:
        config: the run's settings.
        on_step: called on every process after every step with (global step, this process's losses: loss,
            reconstruction, kl, stage, and psnr for images). Raising from it stops the run, like a crash; the
            last checkpoint can then be resumed.

    Returns a `FieldTrainingResult` (paths and metrics); on processes other than the main one `metrics` is empty.
    """
    return FieldTrainer(config, on_step).train()


__all__ = ["FieldTrainer", "FieldTrainingResult", "train_field"]
