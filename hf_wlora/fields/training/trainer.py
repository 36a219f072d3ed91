"""`train_field`: stage 1, the variational auto-decoder, with Accelerate (CPU, one GPU, or `accelerate launch`).

Read top to bottom: set up (data, model, optimiser, EMA, resume), loop over the progressive schedule, export.

Per step: the step's instances and random draws come from `hf_wlora.training.schedule` (pure functions of the seed
and the step);
each process takes its share of the global batch, decodes z = mu + sigma * eps at the stage's coordinates, and
minimises reconstruction + kl_weight * KL; Accelerate averages the gradients. After the optimiser step the EMA of
the field moves. Checkpoints restore model, optimiser, EMA, step and (through the step) the schedule position and
data order, so a run resumed after a crash ends with the same weights as one that never stopped.
"""

from __future__ import annotations

import json
import logging
import math
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from accelerate import Accelerator
from tqdm.auto import tqdm

from ...training.checkpoints import TrainingProgress, checkpoint_to_resume, save_checkpoint
from ...training.distributed import check_world_size, global_batch_size
from ...training.ema import ModelEMA
from ...training.schedule import batch_instances, lr_factor, step_generator
from ..configuration_neural_field import NeuralFieldConfig
from ..modeling_neural_field import NeuralFieldModel
from .card import field_card_template, write_field_card
from .codes import AutoDecoder, VariationalCodes
from .config import FieldTrainingConfig
from .data import ImageTrainingData, ShapeTrainingData, build_training_data
from .evaluate import image_psnr, shape_chamfer
from .schedule import stage_at

logger = logging.getLogger(__name__)


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


def psnr_from_mse(mse: float) -> float:
    """PSNR in dB of [0, 1] images with mean squared error `mse`, for the progress bar and logs."""
    return math.inf if mse <= 0 else -10.0 * math.log10(mse)


def _build_model(config: FieldTrainingConfig, num_instances: int) -> AutoDecoder:
    options = dict(config.model)
    options.pop("modality", None)  # checked against the data by the config
    if config.model_preset == "paper":
        field_config = NeuralFieldConfig.paper_preset(config.modality, **options)
    else:
        field_config = NeuralFieldConfig(modality=config.modality, **options)
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
        self.started = time.perf_counter()
        self.config = config
        self.on_step = on_step
        self.output_dir = Path(config.output_dir)
        self.checkpoint_root = self.output_dir / "checkpoints"
        field_card_template()  # fail now rather than after training
        self.accelerator = Accelerator(
            mixed_precision=config.mixed_precision,
            log_with=config.log_with or None,
            project_dir=str(self.output_dir),
        )
        check_world_size(self.accelerator)
        self.latest_checkpoint = checkpoint_to_resume(self.output_dir, self.checkpoint_root, config.resume)

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
        self.model, self.optimizer = self.accelerator.prepare(model, optimizer)
        self.ema = ModelEMA(self._unwrapped.field, config.ema_decay)
        self.progress = TrainingProgress(config.fingerprint())
        # Order matters: load_state restores custom objects by registration index.
        self.accelerator.register_for_checkpointing(self.ema, self.progress)
        if self.latest_checkpoint is not None:
            self.accelerator.load_state(str(self.latest_checkpoint))
            logger.info("resumed from %s at step %d", self.latest_checkpoint, self.progress.step)

    @property
    def _unwrapped(self) -> AutoDecoder:
        return self.accelerator.unwrap_model(self.model)

    def train(self) -> FieldTrainingResult:
        config, accelerator = self.config, self.accelerator
        stop = min(config.total_steps, config.max_steps or config.total_steps)
        if accelerator.is_main_process:
            self.output_dir.mkdir(parents=True, exist_ok=True)
            config.to_yaml(self.output_dir / "training_config.yaml")
        if config.log_with:
            accelerator.init_trackers("hf_wlora-field", config={k: str(v) for k, v in config.to_dict().items()})
        bar = tqdm(total=stop, initial=self.progress.step, disable=not accelerator.is_local_main_process)
        segment_start = time.perf_counter()
        while self.progress.step < stop:
            losses = self._train_step(self.progress.step)
            self.progress.step += 1
            step = self.progress.step
            bar.update(1)
            is_log_step = step % config.log_every == 0 or step == stop
            if is_log_step or self.on_step is not None:  # reading the losses waits for the device: only when needed
                logs = self._logs(losses)
            if is_log_step:
                reduced = self._reduce(logs)
                bar.set_postfix({key: f"{value:.4g}" for key, value in reduced.items()})
                accelerator.log(reduced, step=step)
            if self.on_step is not None:
                self.on_step(step, logs)
            if step % config.checkpoint_every == 0 or step == stop:
                self.progress.train_time_s += time.perf_counter() - segment_start
                segment_start = time.perf_counter()
                save_checkpoint(accelerator, self.checkpoint_root, step, config.keep_checkpoints)
        bar.close()
        self.progress.train_time_s += time.perf_counter() - segment_start
        result = self._export(wall_time_s=time.perf_counter() - self.started)
        accelerator.end_training()
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
        share = batch_size // accelerator.num_processes
        local = slice(accelerator.process_index * share, (accelerator.process_index + 1) * share)
        device = accelerator.device
        indices, eps = indices[local].to(device), eps[local].to(device)
        batch = self.data.batch(stage, indices, None if selection is None else selection[local].to(device))

        with accelerator.autocast():
            predictions, kl = self.model(indices, batch.coords, eps)
        reconstruction = self.data.loss(predictions, batch.targets)
        kl = kl.float().mean()
        loss = reconstruction + config.kl_weight * kl
        # the learning rate is a function of the step, like everything else, so resuming needs no scheduler state
        factor = lr_factor(step, config.total_steps, config.lr_schedule, config.min_lr_ratio)
        for group, base in zip(self.optimizer.param_groups, (config.lr_field, config.lr_codes), strict=True):
            group["lr"] = base * factor
        self.optimizer.zero_grad(set_to_none=True)
        accelerator.backward(loss)
        if config.max_grad_norm is not None:
            accelerator.clip_grad_norm_(self.model.parameters(), config.max_grad_norm)
        self.optimizer.step()
        self.ema.update(self._unwrapped.field)

        return {"loss": loss.detach(), "reconstruction": reconstruction.detach(), "kl": kl.detach()}

    def _logs(self, losses: dict[str, torch.Tensor]) -> dict[str, float]:
        """This process's losses as floats, with the stage and (images) the batch PSNR."""
        logs = {key: float(value) for key, value in losses.items()}
        logs["stage"] = float(stage_at(self.config.stages, self.progress.step - 1)[0])
        if self.data.modality == "image":
            logs["psnr"] = psnr_from_mse(logs["reconstruction"])
        return logs

    def _reduce(self, logs: dict[str, float]) -> dict[str, float]:
        """Average the per-process losses (PSNR recomputed from the mean reconstruction error)."""
        keys = ["loss", "reconstruction", "kl"]
        values = torch.tensor([logs[key] for key in keys], device=self.accelerator.device)
        values = self.accelerator.reduce(values, reduction="mean").tolist()
        reduced = dict(zip(keys, values, strict=True))
        reduced["stage"] = logs["stage"]
        if self.data.modality == "image":
            reduced["psnr"] = psnr_from_mse(reduced["reconstruction"])
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

        accelerator, config = self.accelerator, self.config
        out = self.output_dir
        result = FieldTrainingResult(
            output_dir=out,
            field_dir=out / "field",
            modulated_field_dir=out / "modulated_field",
            codes_path=out / "codes.safetensors",
            metrics_path=out / "metrics.json",
            metrics={},
            step=self.progress.step,
        )
        accelerator.wait_for_everyone()
        if accelerator.is_main_process:
            field = self.ema.module
            codes = self._unwrapped.codes
            mu = codes.mu.weight.detach()
            result.metrics = {
                "modality": self.data.modality,
                **self._evaluate(field, mu),
                "num_instances": len(self.data),
                "steps": self.progress.step,
                "train_time_s": round(self.progress.train_time_s, 2),
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
