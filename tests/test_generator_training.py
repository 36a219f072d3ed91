"""Stage-3 training (hf_wlora.pipelines.generator_training): config, a short run, exact resume, two processes,
bad input.

A weight data set of 24 two-cluster instances on a 16-wide field and a 32-wide transformer keep every run to a few
seconds on 2 CPU cores.
"""

from __future__ import annotations

import json
import math
import runpy
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import torch
import yaml
from safetensors.torch import load_file
from stage3_helpers import make_field, write_weight_dataset

from hf_wlora.pipelines import WeightSpacePipeline
from hf_wlora.pipelines.generator_training import GeneratorTrainingConfig, denoising_loss, train_generator
from hf_wlora.training.distributed import global_batch_size

ROOT = Path(__file__).parent.parent
TINY_MODEL = {"hidden_size": 32, "num_layers": 2, "num_heads": 4}


@pytest.fixture(scope="module")
def weights_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("stage3")
    make_field().save_pretrained(root / "field")
    return write_weight_dataset(root / "weights", root / "field")


def tiny_config(weights: Path, output_dir: Path, **overrides: Any) -> GeneratorTrainingConfig:
    values: dict[str, Any] = {
        "weights": str(weights),
        "output_dir": str(output_dir),
        "model": TINY_MODEL,
        "steps": 40,
        "batch_size": 8,
        "learning_rate": 2e-3,
        "warmup_steps": 5,
        "checkpoint_every": 10,
        "num_grid_samples": 4,
        "sample_inference_steps": 4,
        "eval_noise_draws": 2,
    }
    return GeneratorTrainingConfig(**{**values, **overrides})


# --- config -----------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"learning_rte": 1e-3}, "unknown key 'learning_rte'. Did you mean 'learning_rate'?"),
        ({"model": {"hidden": 64}}, "model: unknown options ['hidden']"),
        ({"model": {"spec": {}}}, "the spec, classes and encoding settings come from the weight data set"),
        ({"prediction_type": "x0"}, "prediction_type must be one of"),
        ({"beta_schedule": "cosine"}, "beta_schedule must be one of"),
        ({"warmup_steps": 50, "steps": 50}, "warmup_steps must be an integer in [0, steps)"),
        ({"class_dropout_prob": 1.0}, "class_dropout_prob must be in [0, 1)"),
        ({"learning_rate": float("inf")}, "learning_rate must be a positive number, got inf"),
        ({"weight_decay": float("nan")}, "weight_decay must be a non-negative number, got nan"),
        ({"ema_decay": 1.0}, "ema_decay must be in [0, 1)"),
        ({"mixed_precision": "fp8"}, "mixed_precision must be one of"),
        ({"batch_size": 0}, "batch_size must be a positive integer"),
        ({"grid_guidance_interval": [0.5, 0.2]}, "grid_guidance_interval must be (start, end), fractions of the"),
        ({"grid_guidance_scale": 2, "class_dropout_prob": 0}, "class_dropout_prob=0 never trains: set class_dropout"),
    ],
)
def test_config_rejects_bad_values_with_the_fix(change: dict[str, Any], message: str) -> None:
    with pytest.raises(ValueError) as error:
        GeneratorTrainingConfig.from_dict({"weights": "somewhere", **change})
    assert message in str(error.value)


def test_config_yaml_round_trip(tmp_path: Path) -> None:
    config = tiny_config(tmp_path / "w", tmp_path / "run", grid_guidance_interval=(0.5, 1.0))
    path = tmp_path / "recipe.yaml"
    config.to_yaml(path)
    assert "train" in yaml.safe_load(path.read_text())
    loaded = GeneratorTrainingConfig.from_yaml(path, max_steps=5)
    assert loaded.to_dict() == {**config.to_dict(), "max_steps": 5}
    assert loaded.grid_guidance_interval == (0.5, 1.0)  # YAML's list read back as the pipeline's (start, end)
    with pytest.raises(ValueError, match="missing 'weights'"):
        GeneratorTrainingConfig.from_dict({})


# --- a short run ---------------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def short_run(weights_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Any:
    output_dir = tmp_path_factory.mktemp("short") / "run"
    history: list[float] = []
    result = train_generator(
        tiny_config(weights_dir, output_dir, sample_every=20), on_step=lambda step, logs: history.append(logs["loss"])
    )
    return result, history


def test_short_run_lowers_the_loss_and_exports_a_pipeline(short_run: Any, weights_dir: Path) -> None:
    result, history = short_run
    assert len(history) == 40 and result.step == 40
    metrics = json.loads(result.metrics_path.read_text())
    assert metrics == result.metrics and metrics["num_instances"] == 24 and metrics["prediction_type"] == "sample"
    pipeline = WeightSpacePipeline.from_pretrained(result.pipeline_dir)
    # a fresh transformer predicts 0 (zero-initialised output), so its x0 loss is the mean square of the normalised
    # training weights: 1 per coordinate, minus the mask's frozen coordinates, which normalise to 0
    samples = pipeline.transformer.normalize(pipeline.spec.flatten(load_weights(weights_dir)))
    labels = torch.arange(24) % 2
    before = float(samples.pow(2).mean())
    frozen = int(pipeline.spec.frozen_entries()[0].sum())
    assert before == pytest.approx(1 - frozen / samples.shape[1], rel=1e-5)
    assert metrics["eval_loss"] < 0.6 * before, metrics
    assert sum(history[-10:]) / 10 < 0.7 * sum(history[:5]) / 5
    # the exported transformer is the EMA: its evaluation is what metrics.json reports
    assert denoising_loss(pipeline.transformer, pipeline.scheduler, samples, labels, 2, 0) == pytest.approx(
        metrics["eval_loss"], rel=1e-5
    )
    assert pipeline.transformer.config.num_classes == 2 and pipeline.transformer.config.training["steps"] == 40
    assert pipeline.config.resolution == 8  # from the weight data set's encoding settings
    # sampling starts at the last training timestep for any step count (diffusers' "leading" would start 2 at 500)
    assert pipeline.scheduler.config.timestep_spacing == "trailing"
    pipeline.scheduler.set_timesteps(2)
    assert pipeline.scheduler.timesteps.tolist() == [999, 499]
    assert {p.name for p in (result.output_dir / "samples").iterdir()} == {"step-000020.png"}
    assert (result.pipeline_dir / "samples.png").is_file()
    card = (result.pipeline_dir / "README.md").read_text()
    assert "![Samples](samples.png)" in card and "(24 instances), 40 steps of batch 8" in card


def load_weights(folder: Path) -> dict[str, torch.Tensor]:
    from hf_wlora.encoding import load_weight_dataset

    return load_weight_dataset(folder).stacked_factors()


# --- resume --------------------------------------------------------------------------------------------------------


def final_state(output_dir: Path) -> dict[str, torch.Tensor]:
    """The exported EMA transformer and the last checkpoint's (non-EMA) weights."""
    last = sorted((output_dir / "checkpoints").iterdir())[-1]
    state = {
        f"ema.{k}": v
        for k, v in load_file(output_dir / "pipeline/transformer/diffusion_pytorch_model.safetensors").items()
    }
    state.update({f"model.{k}": v for k, v in load_file(last / "model.safetensors").items()})
    return state


def test_resumed_runs_end_with_the_same_weights(weights_dir: Path, tmp_path: Path) -> None:
    reference = train_generator(tiny_config(weights_dir, tmp_path / "a")).output_dir

    train_generator(tiny_config(weights_dir, tmp_path / "b", max_steps=13))  # stopped by max_steps
    resumed = train_generator(tiny_config(weights_dir, tmp_path / "b", resume=True))
    assert resumed.step == 40

    def crash(step: int, logs: dict[str, float]) -> None:
        if step == 27:
            raise KeyboardInterrupt("simulated crash")

    with pytest.raises(KeyboardInterrupt):
        train_generator(tiny_config(weights_dir, tmp_path / "c"), on_step=crash)
    assert sorted(p.name for p in (tmp_path / "c" / "checkpoints").iterdir()) == ["step-000010", "step-000020"]
    train_generator(tiny_config(weights_dir, tmp_path / "c", resume=True))

    expected = final_state(reference)
    for run in ("b", "c"):
        state = final_state(tmp_path / run)
        assert state.keys() == expected.keys()
        for key, value in expected.items():
            assert torch.equal(state[key], value), (run, key)
    losses = [json.loads((tmp_path / run / "metrics.json").read_text())["eval_loss"] for run in "abc"]
    assert losses[0] == losses[1] == losses[2]
    # a finished run run again exports again with the figures of the run that trained
    before = json.loads((tmp_path / "b" / "metrics.json").read_text())
    assert train_generator(tiny_config(weights_dir, tmp_path / "b", resume=True)).step == 40
    after = json.loads((tmp_path / "b" / "metrics.json").read_text())
    assert math.isfinite(before["train_loss"]) and before["samples_per_s"] > 0
    assert {key: after[key] for key in ("train_loss", "samples_per_s", "eval_loss")} == {
        key: before[key] for key in ("train_loss", "samples_per_s", "eval_loss")
    }


def test_a_rerun_after_a_crash_in_the_export_keeps_the_training_figures(
    weights_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    reference = json.loads(train_generator(tiny_config(weights_dir, tmp_path / "a")).metrics_path.read_text())

    def crash(*args: Any, **kwargs: Any) -> None:
        raise KeyboardInterrupt("simulated crash while exporting")

    with monkeypatch.context() as patch:
        patch.setattr(WeightSpacePipeline, "save_pretrained", crash)
        with pytest.raises(KeyboardInterrupt):
            train_generator(tiny_config(weights_dir, tmp_path / "b"))
    assert not (tmp_path / "b" / "metrics.json").exists()
    metrics = json.loads(
        train_generator(tiny_config(weights_dir, tmp_path / "b", resume=True)).metrics_path.read_text()
    )
    assert metrics["train_loss"] == reference["train_loss"] and metrics["samples_per_s"] > 0
    assert metrics["eval_loss"] == reference["eval_loss"]


def test_attention_dropout_is_drawn_from_the_seed(weights_dir: Path, tmp_path: Path) -> None:
    """With dropout its masks follow (seed, step, process), not whatever drew from torch's global generator before:
    two runs of one config in one process end with the same weights, and another seed changes them."""
    model = {**TINY_MODEL, "dropout": 0.3}
    runs = {}
    for name, seed in (("a", 0), ("b", 0), ("c", 1)):
        torch.manual_seed({"a": 1, "b": 2, "c": 3}[name])  # a global generator in another state before each run
        torch.rand(17)
        runs[name] = final_state(
            train_generator(tiny_config(weights_dir, tmp_path / name, model=model, steps=10, seed=seed)).output_dir
        )
    assert all(torch.equal(runs["a"][key], value) for key, value in runs["b"].items())
    assert not all(torch.equal(runs["a"][key], value) for key, value in runs["c"].items())


def test_resume_guards(weights_dir: Path, tmp_path: Path) -> None:
    train_generator(tiny_config(weights_dir, tmp_path, max_steps=10))
    with pytest.raises(ValueError, match=r"already holds checkpoints.*--resume"):
        train_generator(tiny_config(weights_dir, tmp_path))
    with pytest.raises(ValueError, match=r"other settings \(learning_rate: 0.002 -> 0.001\)"):
        train_generator(tiny_config(weights_dir, tmp_path, resume=True, learning_rate=1e-3))


def test_a_resume_refuses_weights_encoded_again(tmp_path: Path) -> None:
    """The same folder holding other weights (encoded again since the checkpoint): resuming would train on with
    another normalisation than the checkpoint's model has, and export samples scaled by the old one."""
    make_field().save_pretrained(tmp_path / "field")
    weights = write_weight_dataset(tmp_path / "weights", tmp_path / "field")
    train_generator(tiny_config(weights, tmp_path / "run", max_steps=10))
    shutil.rmtree(weights)
    write_weight_dataset(tmp_path / "weights", tmp_path / "field", seed=1)
    with pytest.raises(ValueError, match=r"was trained on other weights than .* holds now"):
        train_generator(tiny_config(weights, tmp_path / "run", resume=True))


def test_a_checkpoint_from_before_a_setting_existed_resumes_at_its_default(
    weights_dir: Path, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    train_generator(tiny_config(weights_dir, tmp_path, max_steps=10))
    progress_file = tmp_path / "checkpoints" / "step-000010" / "training_progress.json"
    progress = json.loads(progress_file.read_text())
    # as written by a version of hf_wlora before `ema_decay` was a setting: that run averaged as the default does
    del progress["fingerprint"]["ema_decay"]
    progress_file.write_text(json.dumps(progress))
    with pytest.raises(ValueError, match=r"other settings \(ema_decay: 0.999 -> 0.99\)"):
        train_generator(tiny_config(weights_dir, tmp_path, resume=True, ema_decay=0.99))
    assert train_generator(tiny_config(weights_dir, tmp_path, resume=True, max_steps=20)).step == 20
    assert "predates the settings ema_decay=0.999; resuming with their defaults" in caplog.text


TWO_PROCESSES = """
import json, sys
from accelerate import PartialState, debug_launcher
from hf_wlora.pipelines.generator_training import GeneratorTrainingConfig, train_generator

def run():
    losses = []
    config = GeneratorTrainingConfig.from_yaml(sys.argv[1])
    train_generator(config, on_step=lambda step, logs: losses.append(logs["loss"]))
    state = PartialState()
    with open(f"{sys.argv[2]}-{state.process_index}.json", "w") as handle:
        json.dump({"losses": losses, "world_size": state.num_processes}, handle)

debug_launcher(run, num_processes=2)
"""


def test_two_processes_match_one_on_the_same_global_batch(weights_dir: Path, tmp_path: Path) -> None:
    # debug_launcher forks: run it from a fresh interpreter (a fork of a process that already ran torch's OpenMP
    # thread pool hangs in the child's first parallel op)
    config = tiny_config(weights_dir, tmp_path / "two", steps=12, warmup_steps=2)
    config.to_yaml(tmp_path / "two.yaml")
    done = subprocess.run(
        [sys.executable, "-c", TWO_PROCESSES, str(tmp_path / "two.yaml"), str(tmp_path / "losses")],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    ranks = [json.loads((tmp_path / f"losses-{rank}.json").read_text()) for rank in (0, 1)]
    assert [rank["world_size"] for rank in ranks] == [2, 2]
    one: list[float] = []
    train_generator(
        tiny_config(weights_dir, tmp_path / "one", steps=12, warmup_steps=2),
        on_step=lambda s, logs: one.append(logs["loss"]),
    )
    # each process has half of the same global batch: the mean of the two halves' losses is the global batch's loss
    two = [(a + b) / 2 for a, b in zip(ranks[0]["losses"], ranks[1]["losses"], strict=True)]
    assert two == pytest.approx(one, rel=1e-4, abs=1e-6)
    metrics = {run: json.loads((tmp_path / run / "metrics.json").read_text()) for run in ("one", "two")}
    assert metrics["two"]["num_processes"] == 2
    # the reported training loss is every process's, as the logged one: the same as one process's
    assert metrics["two"]["train_loss"] == pytest.approx(metrics["one"]["train_loss"], rel=1e-4)


@pytest.fixture
def fresh_accelerate_state() -> Any:
    """Accelerate keeps one process-wide state whose mixed precision cannot change: start and leave it unset."""
    from accelerate.state import AcceleratorState

    AcceleratorState._reset_state(reset_partial_state=True)
    yield
    AcceleratorState._reset_state(reset_partial_state=True)


def test_bf16_mixed_precision_trains_and_exports_float32(
    weights_dir: Path, tmp_path: Path, fresh_accelerate_state: Any
) -> None:
    result = train_generator(tiny_config(weights_dir, tmp_path, mixed_precision="bf16"))
    assert result.metrics["eval_loss"] < 0.6  # from about 1 (measured 0.30)
    pipeline = WeightSpacePipeline.from_pretrained(result.pipeline_dir)
    assert pipeline.transformer.dtype == torch.float32


# --- bad input and launch guards -----------------------------------------------------------------------------------


def test_bad_inputs_fail_before_training(weights_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    other = make_field()
    other.config.hidden_size = 24  # a field of other shapes: its adapters are not these weights
    from hf_wlora.fields import NeuralFieldModel

    NeuralFieldModel(other.config).save_pretrained(tmp_path / "other-field")
    with pytest.raises(ValueError, match="does not match"):
        train_generator(tiny_config(weights_dir, tmp_path / "out", field=str(tmp_path / "other-field")))
    torch.manual_seed(1)  # the same shapes, other weights: its adapters would mean nothing on it
    NeuralFieldModel(make_field().config).save_pretrained(tmp_path / "retrained-field")
    with pytest.raises(ValueError, match=r"is not the one the weight data set .* was encoded on: the hash"):
        train_generator(tiny_config(weights_dir, tmp_path / "out", field=str(tmp_path / "retrained-field")))
    with pytest.raises(ValueError, match="not a weight data set"):
        train_generator(tiny_config(tmp_path, tmp_path / "out"))
    # a subfolder of the data set's own field (no `field` set) is looked for, not ignored
    with pytest.raises(ValueError, match="No base field in the subfolder 'no-such-subfolder' of"):
        train_generator(tiny_config(weights_dir, tmp_path / "out", field_subfolder="no-such-subfolder"))
    monkeypatch.setenv("WORLD_SIZE", "2")
    with pytest.raises(RuntimeError, match="WORLD_SIZE=2 processes were launched but the Accelerator sees 1"):
        train_generator(tiny_config(weights_dir, tmp_path / "out"))
    assert not (tmp_path / "out" / "checkpoints").exists()


def test_global_batch_is_at_most_the_data_and_splits_over_processes() -> None:
    assert global_batch_size(64, 24, 2) == 24
    assert global_batch_size(8, 24, 4) == 8
    with pytest.raises(ValueError, match="batch size 7 does not split evenly over 2 processes"):
        global_batch_size(7, 24, 2)


def test_recipe_script_is_a_thin_wrapper(weights_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "recipe.yaml"
    tiny_config(weights_dir, tmp_path / "ignored", steps=6, warmup_steps=1).to_yaml(path)
    output_dir = tmp_path / "run"
    argv = ["train.py", "--config", str(path), "--output_dir", str(output_dir), "--max_steps", "3"]
    monkeypatch.setattr(sys, "argv", argv)
    with pytest.raises(SystemExit) as exit_code:
        runpy.run_path(str(ROOT / "recipes" / "train.py"), run_name="__main__")
    assert exit_code.value.code == 0
    assert json.loads((output_dir / "metrics.json").read_text())["steps"] == 3
    assert yaml.safe_load((output_dir / "training_config.yaml").read_text())["train"]["max_steps"] == 3
