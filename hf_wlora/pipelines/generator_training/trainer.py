"""`train_generator`: stage 3, a `WeightSpaceDiT` trained on a weight data set with Accelerate, ending in a pipeline.

Read top to bottom: set up (weights, base field, model, noise schedule, optimiser, EMA, resume), loop, export. The
setup, optimiser step, loop and checkpoints are `hf_wlora.training.loop.TrainingLoop`'s, shared with stage 1.

Per step: the step's instances, noise, timesteps and label dropout are drawn for the global batch from
`hf_wlora.training.step_draws` (pure functions of the seed and the step), and each process takes its share; the
transformer predicts the scheduler's target (noise, clean weights or velocity) from the noised normalised weights,
and the mean squared error is minimised with AdamW; Accelerate averages the gradients. The EMA of the transformer is
what samples and what is exported. Attention dropout, if any, draws its masks from (seed, step, process) too.
Checkpoints restore model, optimiser, EMA and step, so a run resumed after a crash ends with exactly the weights of
one that never stopped. The export is a `WeightSpacePipeline` folder with its card.
"""

from __future__ import annotations

import contextlib
import copy
import json
import math
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from diffusers import DDPMScheduler

from ...encoding import WeightDataset, load_weight_dataset, module_fingerprint
from ...fields import NeuralFieldModel
from ...files import write_text_atomic
from ...models import WeightSpaceDiT
from ...representations import load_base_field, representation_from_spec
from ...training.distributed import global_batch_size
from ...training.loop import TrainingLoop, process_share
from ...training.step_draws import batch_instances, lr_factor, mix_seed, step_generator
from ..card import SAMPLES_PICTURE
from ..pictures import decoded_tiles, picture_scale, tile_grid
from ..pipeline_weight_space import WeightSpacePipeline
from .config import GeneratorTrainingConfig

DEFAULT_RESOLUTION = 64
EVAL_BATCH = 256  # instances per forward pass of the final evaluation
# the loop's figures (train_loss, samples_per_s), written before the export: a rerun after a crash in it keeps them
TRAINING_FIGURES = "training_figures.json"

StepCallback = Callable[[int, dict[str, float]], None]


@dataclass
class GeneratorTrainingResult:
    """Where a run wrote its outputs, and its final metrics.

    Attributes:
        output_dir: the run's folder (checkpoints, `samples/`, `metrics.json`).
        pipeline_dir: the exported `WeightSpacePipeline` (EMA transformer, scheduler, base field, card).
        metrics_path: `metrics.json`, the same values as `metrics`.
        metrics: `eval_loss` (the exported model's denoising loss over the training weights, fixed noise),
            `train_loss` (mean of the last logged losses), steps, `samples_per_s` and times. Empty on processes other
            than the main one.
        step: the global step the run stopped at.
    """

    output_dir: Path
    pipeline_dir: Path
    metrics_path: Path
    metrics: dict[str, Any]
    step: int


def load_training_weights(config: GeneratorTrainingConfig) -> WeightDataset:
    """The weight data set named by the config."""
    return load_weight_dataset(config.weights, split=config.split, revision=config.weights_revision)


def load_generator_field(config: GeneratorTrainingConfig, weights: WeightDataset) -> NeuralFieldModel:
    """The baked base field: the config's `field` if set, else the one the weight data set was encoded on."""
    info = weights.info
    location = config.field or info.base_field
    if location is None:
        raise ValueError(f"The weight data set {config.weights} names no base field: set `field` in the config.")
    # each of subfolder and revision: the config's if set, else the data set's record of its own field
    recorded = (None, None) if config.field is not None else (info.base_field_subfolder, info.base_field_revision)
    subfolder = config.field_subfolder if config.field_subfolder is not None else recorded[0]
    revision = config.field_revision if config.field_revision is not None else recorded[1]
    field = load_base_field(location, subfolder, revision)
    representation_from_spec(weights.spec, field)  # a field of other shapes fails here, with the differences
    # one of the same shapes but other weights (another training of the field) would train a generator of adapters
    # that mean nothing on it, without a word; the mlp kinds do not read the base's weights
    if weights.spec.kind != "mlp" and info.base_field_sha256 not in (None, module_fingerprint(field)):
        raise ValueError(
            f"The base field {location} is not the one the weight data set {config.weights} was encoded on: the hash "
            f"of its weights is {module_fingerprint(field)[:12]}..., the data set's base_field_sha256 "
            f"{info.base_field_sha256[:12]}.... Point `field` at the field the data set was encoded with, or encode "
            "the data again on this one."
        )
    return field


def denoising_loss(
    model: WeightSpaceDiT,
    scheduler: DDPMScheduler,
    samples: torch.Tensor,
    labels: torch.Tensor | None,
    draws: int,
    seed: int,
) -> float:
    """Mean squared error of `model`'s prediction over every (normalised) sample, with `draws` fixed noise draws and
    timesteps per sample (no label dropout): the same number for the same model on any machine and process count."""
    generator = torch.Generator().manual_seed(mix_seed(seed, 0xE7A1))
    device = samples.device
    total, count = 0.0, 0
    with torch.no_grad():
        for _ in range(draws):
            for start in range(0, samples.shape[0], EVAL_BATCH):
                clean = samples[start : start + EVAL_BATCH]
                noise = torch.randn(clean.shape, generator=generator).to(device)
                timesteps = torch.randint(
                    0, scheduler.config.num_train_timesteps, (clean.shape[0],), generator=generator
                )
                timesteps = timesteps.to(device)
                batch_labels = None if labels is None else labels[start : start + EVAL_BATCH]
                prediction = model(scheduler.add_noise(clean, noise, timesteps), timesteps, batch_labels).sample
                target = _target(scheduler, clean, noise, timesteps)
                total += float(F.mse_loss(prediction.float(), target, reduction="sum"))
                count += target.numel()
    return total / count


def _target(
    scheduler: DDPMScheduler, clean: torch.Tensor, noise: torch.Tensor, timesteps: torch.Tensor
) -> torch.Tensor:
    """What the transformer learns to predict, by the scheduler's prediction type."""
    kind = scheduler.config.prediction_type
    if kind == "epsilon":
        return noise
    if kind == "sample":
        return clean
    return scheduler.get_velocity(clean, noise, timesteps)


class GeneratorTrainer:
    """One stage-3 run. `train_generator(config)` is the usual entry point; this class keeps the pieces together."""

    def __init__(self, config: GeneratorTrainingConfig, on_step: StepCallback | None = None) -> None:
        self.config = config
        self.on_step = on_step
        self.loop = TrainingLoop(config, config.steps, tracker="hf_wlora-generator")
        self.accelerator = self.loop.accelerator

        with self.accelerator.main_process_first():  # the main process downloads first when these are Hub ids
            self.weights = load_training_weights(config)
            self.field = load_generator_field(config, self.weights)
        spec, info = self.weights.spec, self.weights.info
        vectors = spec.flatten(self.weights.stacked_factors())
        labels = self.weights.labels
        self.batch_size = global_batch_size(config.batch_size, len(self.weights), self.accelerator.num_processes)

        class_names = info.class_names
        conditional = config.conditional if config.conditional is not None else bool(class_names)
        num_classes = (len(class_names) if class_names else int(labels.max()) + 1) if conditional else 0
        if conditional and num_classes < 1:
            raise ValueError(f"conditional=true, but {config.weights} has no labels; set conditional: false.")
        with torch.random.fork_rng(devices=[]):  # the init depends on config.seed only
            torch.manual_seed(config.seed)
            model = WeightSpaceDiT(
                spec.to_dict(),
                **config.model,
                num_classes=num_classes,
                class_dropout_prob=config.class_dropout_prob,
                class_names=class_names if conditional else None,
                encoding=info.encoding,
            )
        model.set_normalization(vectors)
        statistics = (model.weight_mean.clone(), model.weight_std.clone())
        self.noise_scheduler = DDPMScheduler(
            num_train_timesteps=config.num_train_timesteps,
            beta_schedule=config.beta_schedule,
            prediction_type=config.prediction_type,
            clip_sample=False,  # normalised weights are not confined to [-1, 1] like pixels
            # sampling starts at the last training timestep whatever the step count ("leading", diffusers' default,
            # starts 2 steps of 1,000 at t = 500 and 600 steps at t = 599: far from the pure noise the loop starts in)
            timestep_spacing="trailing",
        )
        device = self.accelerator.device
        self.samples = model.normalize(vectors).to(device)
        null = model.null_class_label
        self.labels = torch.where(labels < 0, null, labels).to(device) if conditional else None

        optimizer = torch.optim.AdamW(
            model.parameters(), lr=config.learning_rate, betas=config.adam_betas, weight_decay=config.weight_decay
        )
        self.model = self.loop.prepare(model, optimizer)
        restored = self._unwrapped
        restored_statistics = (restored.weight_mean.cpu(), restored.weight_std.cpu())
        if not all(map(torch.equal, statistics, restored_statistics)):
            # the checkpoint's model normalises other weights: training on would mix two data sets' scales, and the
            # export would denormalise every sample with the checkpoint's statistics
            raise ValueError(
                f"The checkpoint in {self.loop.output_dir} was trained on other weights than {config.weights} holds "
                "now (their per-coordinate mean and std differ: the data set was encoded again, or a Hub id moved to "
                "another commit). Resume with the weights it was trained on, or train into a new output_dir."
            )

    @property
    def _unwrapped(self) -> WeightSpaceDiT:
        return self.accelerator.unwrap_model(self.model)

    def train(self) -> GeneratorTrainingResult:
        config, loop = self.config, self.loop
        first_step, loop_start = loop.progress.step, time.perf_counter()
        recent: list[torch.Tensor] = []
        for step in loop.steps():
            loss = self._train_step(step)
            recent = [*recent[-(config.log_every - 1) :], loss] if config.log_every > 1 else [loss]
            if loop.is_log_step(step):  # reading the loss waits for the device: only here
                reduced = float(self.accelerator.reduce(torch.stack(recent).mean(), reduction="mean"))
                loop.log(step, {"loss": reduced, "lr": self._learning_rate(step)})
            done = step + 1  # the global step the callback and the sample grids are numbered by
            if self.on_step is not None:
                self.on_step(done, {"loss": float(loss)})
            if config.sample_every and done % config.sample_every == 0 and done != loop.stop:
                self._write_samples(loop.output_dir / "samples" / f"step-{done:06d}.png")
        loop_time = time.perf_counter() - loop_start
        figures_path = loop.output_dir / TRAINING_FIGURES
        if recent:  # every process's losses, as the log reduces them: the figure does not depend on the world size
            train_loss = float(self.accelerator.reduce(torch.stack(recent).mean(), reduction="mean"))
            throughput = (loop.progress.step - first_step) * self.batch_size / loop_time
            if self.accelerator.is_main_process:  # before the export, so that a crash in it loses neither
                write_text_atomic(figures_path, json.dumps({"train_loss": train_loss, "samples_per_s": throughput}))
        else:  # a finished run run again (after a crash in its export, say): the figures of the run that trained
            previous = json.loads(figures_path.read_text()) if figures_path.is_file() else {}
            train_loss, throughput = previous.get("train_loss", math.nan), previous.get("samples_per_s", 0.0)
        result = self._export(train_loss, throughput)
        self.accelerator.end_training()
        return result

    def _learning_rate(self, step: int) -> float:
        config = self.config
        return config.learning_rate * lr_factor(
            step, config.steps, config.lr_schedule, config.min_lr_ratio, config.warmup_steps
        )

    def _train_step(self, step: int) -> torch.Tensor:
        """One optimiser step at global `step`; returns this process's loss (still on the device)."""
        config, accelerator = self.config, self.accelerator
        batch = self.batch_size
        # Draw for the global batch, then take this process's share: the numbers do not depend on the world size.
        generator = step_generator(config.seed, step)
        indices = batch_instances(self.samples.shape[0], batch, config.seed, 0, step)
        noise = torch.randn(batch, self.samples.shape[1], generator=generator)
        timesteps = torch.randint(0, config.num_train_timesteps, (batch,), generator=generator)
        dropped = torch.rand(batch, generator=generator) < config.class_dropout_prob
        local = process_share(accelerator, batch)
        device = accelerator.device
        indices, noise, timesteps, dropped = (x[local].to(device) for x in (indices, noise, timesteps, dropped))

        clean = self.samples[indices]
        labels = None
        if self.labels is not None:
            labels = torch.where(dropped, self._unwrapped.null_class_label, self.labels[indices])
        noisy = self.noise_scheduler.add_noise(clean, noise, timesteps)
        with self._dropout_draws(step), accelerator.autocast():
            prediction = self.model(noisy, timesteps, labels).sample
        loss = F.mse_loss(prediction.float(), _target(self.noise_scheduler, clean, noise, timesteps))
        self.loop.optimizer_step(loss, [self._learning_rate(step)])
        return loss.detach()

    @contextlib.contextmanager
    def _dropout_draws(self, step: int) -> Iterator[None]:
        """With attention dropout, its masks drawn from a generator seeded by (seed, step, process), on a forked RNG:
        they come from torch's global generator, which would otherwise make them depend on whatever drew from it
        before (another run in the process, the data loading) and not on `seed`. Without dropout nothing is drawn."""
        if not self._unwrapped.config.dropout:
            yield
            return
        device = self.accelerator.device
        with torch.random.fork_rng(devices=[device] if device.type == "cuda" else []):
            torch.manual_seed(mix_seed(self.config.seed, step, self.accelerator.process_index, 0xD409))
            yield

    # -- sampling and export ----------------------------------------------------------------------------------------
    def _pipeline(self, transformer: WeightSpaceDiT) -> WeightSpacePipeline:
        encoding_options = self.weights.info.encoding.get("data_options") or {}
        resolution = self.config.resolution or encoding_options.get("resolution") or DEFAULT_RESOLUTION
        pipeline = WeightSpacePipeline(
            transformer, self.noise_scheduler, self.field, resolution, self.config.mesh_resolution
        )
        pipeline.set_progress_bar_config(disable=True)
        return pipeline.to(self.accelerator.device)

    def _write_samples(self, path: Path) -> None:
        """A grid of samples of the EMA transformer (main process; the others wait)."""
        if self.accelerator.is_main_process:
            path.parent.mkdir(parents=True, exist_ok=True)
            pipeline = self._pipeline(self.loop.ema.module)
            config = self.config
            num_classes = self.loop.ema.module.config.num_classes
            labels = [index % num_classes for index in range(config.num_grid_samples)] if num_classes else None
            weights = pipeline(
                config.num_grid_samples,
                class_labels=labels,
                guidance_scale=config.grid_guidance_scale if num_classes else 1.0,
                guidance_interval=config.grid_guidance_interval,
                num_inference_steps=config.sample_inference_steps,
                generator=torch.Generator().manual_seed(config.seed),
                output_type="weights",
            ).weights
            columns = num_classes or min(8, config.num_grid_samples)
            tile_grid(decoded_tiles(pipeline, weights), columns, picture_scale(pipeline)).save(path)
        self.accelerator.wait_for_everyone()

    def _export(self, train_loss: float, throughput: float) -> GeneratorTrainingResult:
        """Evaluate the EMA transformer and write pipeline/ (with card and samples.png) and metrics.json."""
        accelerator, config, progress = self.accelerator, self.config, self.loop.progress
        out = self.loop.output_dir
        result = GeneratorTrainingResult(
            output_dir=out,
            pipeline_dir=out / "pipeline",
            metrics_path=out / "metrics.json",
            metrics={},
            step=progress.step,
        )
        accelerator.wait_for_everyone()
        if accelerator.is_main_process:
            transformer = copy.deepcopy(self.loop.ema.module).float().eval()
            eval_loss = denoising_loss(
                transformer, self.noise_scheduler, self.samples, self.labels, config.eval_noise_draws, config.seed
            )
            result.metrics = {
                "eval_loss": eval_loss,
                "train_loss": train_loss,
                "prediction_type": config.prediction_type,
                "num_instances": len(self.weights),
                "num_parameters": sum(p.numel() for p in transformer.parameters()),
                "steps": progress.step,
                "batch_size": self.batch_size,
                "samples_per_s": round(throughput, 2),
                "train_time_s": round(progress.train_time_s, 2),
                "wall_time_s": round(time.perf_counter() - self.loop.started, 2),
                "num_processes": accelerator.num_processes,
                "device": str(accelerator.device),
            }
            transformer.register_to_config(
                training={
                    "weights": config.weights,
                    "weights_revision": config.weights_revision,
                    "split": config.split,
                    "num_instances": len(self.weights),
                    "steps": progress.step,
                    "batch_size": self.batch_size,
                    "learning_rate": config.learning_rate,
                    "ema_decay": config.ema_decay,
                    "train_time_s": result.metrics["train_time_s"],
                    "hardware": f"{accelerator.num_processes} x {accelerator.device.type}",
                    "final_loss": eval_loss,
                }
            )
            pipeline = self._pipeline(transformer)
            result.pipeline_dir.mkdir(parents=True, exist_ok=True)
            self._write_samples(result.pipeline_dir / SAMPLES_PICTURE)  # before saving: the card shows it
            pipeline.to("cpu").save_pretrained(result.pipeline_dir)
            result.metrics_path.write_text(json.dumps(result.metrics, indent=2) + "\n")
        else:
            self._write_samples(result.pipeline_dir / SAMPLES_PICTURE)  # waits for the main process
        accelerator.wait_for_everyone()
        return result


def train_generator(config: GeneratorTrainingConfig, on_step: StepCallback | None = None) -> GeneratorTrainingResult:
    """Train a `WeightSpaceDiT` on `config.weights` and export a `WeightSpacePipeline` (see the config).

    Args:
        config: the run's settings.
        on_step: called on every process after every step with (global step, {"loss": this process's loss}).
            Raising from it stops the run, like a crash; the last checkpoint can then be resumed.
    """
    return GeneratorTrainer(config, on_step).train()


__all__ = ["GeneratorTrainer", "GeneratorTrainingResult", "denoising_loss", "train_generator"]
