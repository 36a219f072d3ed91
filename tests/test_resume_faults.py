"""What survives what (README): resumes that refuse changed inputs, torn or corrupt files, tampered checkpoints.

Each test sets up an interrupted run, damages or changes what a careless user or a failing disk would, and checks
that the rerun either recovers to the uninterrupted result or stops at once with a message naming what changed.
"""

from __future__ import annotations

import logging
import os
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from accelerate import Accelerator
from PIL import Image
from stage3_helpers import make_field, save_image_field, write_weight_dataset
from test_encode import assert_same_weights
from test_generator_training import final_state, tiny_config

from hf_wlora.differences import setting_differences
from hf_wlora.encoding import encoder as encode_module
from hf_wlora.encoding.encoder import EncodeConfig, encode
from hf_wlora.encoding.writer import PROGRESS_DIR
from hf_wlora.pipelines.generator_training import train_generator
from hf_wlora.training.checkpoints import (
    CheckpointError,
    TrainingProgress,
    list_checkpoints,
    resume_checkpoint,
    save_checkpoint,
)
from hf_wlora.training.ema import ModelEMA

GLYPHS = {"num_instances": 7, "resolution": 10}


def config(field: str, output_dir: Path, **overrides) -> EncodeConfig:
    settings = {"field": field, "output_dir": str(output_dir), "data_options": GLYPHS, "steps": 6, "batch_size": 2}
    return EncodeConfig(**{**settings, **overrides})


def interrupted_encoding(settings: EncodeConfig, batches: int, monkeypatch: pytest.MonkeyPatch) -> None:
    """Encode `batches` batches of `settings`, then crash as a kill would."""
    real_fit, calls = encode_module.fit_instances, []

    def crash_later(*args, **kwargs):
        calls.append(1)
        if len(calls) > batches:
            raise KeyboardInterrupt("killed")
        return real_fit(*args, **kwargs)

    with monkeypatch.context() as patch:
        patch.setattr(encode_module, "fit_instances", crash_later)
        with pytest.raises(KeyboardInterrupt):
            encode(settings, progress=False)


@pytest.fixture(scope="module")
def field_dir(tmp_path_factory: pytest.TempPathFactory) -> str:
    return save_image_field(tmp_path_factory.mktemp("field"), seed=0)


# --- encoding ---------------------------------------------------------------------------------------------------


def test_resume_on_a_replaced_field_is_refused(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    field = save_image_field(tmp_path / "field", seed=0)
    interrupted_encoding(config(field, tmp_path / "weights"), batches=2, monkeypatch=monkeypatch)
    shutil.rmtree(field)
    save_image_field(tmp_path / "field", seed=1)  # another field at the same path
    with pytest.raises(ValueError, match=r"other settings \(base_field_sha256: '[0-9a-f]{64}' -> '[0-9a-f]{64}'\)"):
        encode(config(field, tmp_path / "weights"), progress=False)


def write_pngs(folder: Path, count: int) -> None:
    folder.mkdir()
    for index in range(count):
        pixels = np.random.default_rng(index).integers(0, 256, size=(10, 10, 3), dtype=np.uint8)
        Image.fromarray(pixels).save(folder / f"{index:02d}.png")


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ("delete", r"1 encoded instances are no longer at their place in the source .*'01\.png'"),
        ("overwrite", r"1 encoded instances have other contents now \(the first: \['01\.png'\]\)"),
    ],
)
def test_resume_on_changed_data_names_the_instances(
    field_dir: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, change: str, message: str
) -> None:
    images = tmp_path / "images"
    write_pngs(images, 6)
    settings = config(field_dir, tmp_path / "weights", data=f"image-folder:{images}", data_options={"resolution": 10})
    interrupted_encoding(settings, batches=1, monkeypatch=monkeypatch)  # 00.png and 01.png are written
    if change == "delete":
        (images / "01.png").unlink()
    else:
        Image.fromarray(np.zeros((10, 10, 3), dtype=np.uint8)).save(images / "01.png")
    with pytest.raises(ValueError, match=message) as error:
        encode(settings, progress=False)
    assert str(tmp_path / "weights" / PROGRESS_DIR / "train") in str(error.value)


@pytest.mark.parametrize("damage", ["truncate", "delete"])
def test_a_damaged_committed_part_is_encoded_again(
    field_dir: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture, damage: str
) -> None:
    encode(config(field_dir, tmp_path / "uninterrupted"), progress=False)
    interrupted_encoding(config(field_dir, tmp_path / "resumed"), batches=2, monkeypatch=monkeypatch)
    # the first of two parts: the rerun's new parts must not take the name of the one still committed
    first = sorted((tmp_path / "resumed" / PROGRESS_DIR / "train").glob("part-*.parquet"))[0]
    if damage == "truncate":
        first.write_bytes(first.read_bytes()[:100])  # what a disk that lost the file's tail leaves
    else:
        first.unlink()
    with caplog.at_level(logging.WARNING):
        encode(config(field_dir, tmp_path / "resumed"), progress=False)
    assert f"The committed part {first} cannot be read" in caplog.text
    assert_same_weights(tmp_path / "uninterrupted", tmp_path / "resumed")


def test_setting_differences_name_nested_keys_and_list_items() -> None:
    before = {"lr": 0.1, "model": {"width": 32, "depth": 2}, "stages": [{"steps": 5}, {"steps": 9}], "gone": 1}
    after = {"lr": 0.1, "model": {"width": 48, "depth": 2}, "stages": [{"steps": 5}, {"steps": 8}], "new": "x" * 99}
    assert setting_differences(before, after) == [
        "gone: 1 -> <unset>",
        "model.width: 32 -> 48",
        f"new: <unset> -> '{'x' * 76}...",  # cut to 80 characters
        "stages[1].steps: 9 -> 8",
    ]
    assert setting_differences(before, before) == []


def test_resume_with_other_settings_names_the_nested_keys(
    field_dir: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    interrupted_encoding(config(field_dir, tmp_path / "weights"), batches=1, monkeypatch=monkeypatch)
    with pytest.raises(ValueError, match=r"other settings \(encoding\.steps: 6 -> 7\)\. Resume") as error:
        encode(config(field_dir, tmp_path / "weights", steps=7), progress=False)
    assert len(str(error.value)) < 400


# --- training checkpoints ---------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def weights_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("stage3")
    make_field().save_pretrained(root / "field")
    return write_weight_dataset(root / "weights", root / "field")


@pytest.fixture(scope="module")
def reference_run(weights_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, torch.Tensor]:
    return final_state(train_generator(tiny_config(weights_dir, tmp_path_factory.mktemp("reference"))).output_dir)


class _Payload:
    """Unpickling this runs `os.mkdir(marker)`: what a tampered checkpoint could do with full unpickling."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (os.mkdir, (str(self.marker),))


@pytest.mark.parametrize(
    "tampered",
    [
        ["custom_checkpoint_0.pkl", "custom_checkpoint_1.pkl"],  # where Accelerate unpickles registered objects
        ["random_states_0.pkl", "optimizer.bin"],  # Accelerate's own files, read with weights_only=True
    ],
)
def test_a_tampered_checkpoint_runs_no_code(
    weights_dir: Path, tmp_path: Path, caplog: pytest.LogCaptureFixture, tampered: list[str]
) -> None:
    train_generator(tiny_config(weights_dir, tmp_path / "run", max_steps=20))
    newest = tmp_path / "run" / "checkpoints" / "step-000020"
    marker = tmp_path / "code-was-run"
    for name in tampered:  # in torch.save's format, which a full torch.load would unpickle
        torch.save({"state": _Payload(marker)}, newest / name)
    with caplog.at_level(logging.INFO):
        resumed = train_generator(tiny_config(weights_dir, tmp_path / "run", resume=True))
    assert not marker.exists()
    assert resumed.step == 40
    assert f"Skipping an unreadable checkpoint: {newest}" in caplog.text
    assert "step-000010 at step 10" in caplog.text  # the checkpoint before the tampered one


@pytest.mark.parametrize("damage", ["truncate model", "truncate optimizer", "empty folder"])
def test_a_damaged_newest_checkpoint_falls_back_to_the_one_before(
    weights_dir: Path,
    tmp_path: Path,
    reference_run: dict[str, torch.Tensor],
    caplog: pytest.LogCaptureFixture,
    damage: str,
) -> None:
    train_generator(tiny_config(weights_dir, tmp_path, max_steps=20))
    newest = tmp_path / "checkpoints" / "step-000020"
    if damage == "empty folder":
        shutil.rmtree(newest)
        newest.mkdir()
    else:
        path = newest / ("model.safetensors" if damage == "truncate model" else "optimizer.bin")
        path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    with caplog.at_level(logging.WARNING):
        train_generator(tiny_config(weights_dir, tmp_path, resume=True))
    assert f"Skipping an unreadable checkpoint: {newest}" in caplog.text
    state = final_state(tmp_path)
    assert state.keys() == reference_run.keys()
    assert all(torch.equal(state[key], value) for key, value in reference_run.items())


def test_saving_after_a_fallback_never_prunes_the_readable_checkpoints(tmp_path: Path) -> None:
    """After a resume fell back past unreadable newer checkpoints, those must not count among the last `keep`: with
    keep=1 the checkpoint just written was deleted in favour of an unreadable one, and the next resume failed."""
    accelerator = Accelerator(cpu=True)
    linear = torch.nn.Linear(2, 2)
    model, _ = accelerator.prepare(linear, torch.optim.Adam(linear.parameters()))  # the optimiser is saved too
    ema, root = ModelEMA(model, 0.9), tmp_path / "checkpoints"
    for step in (10, 20, 30):
        progress = TrainingProgress({"setting": 1})
        progress.step = step
        save_checkpoint(accelerator, root, ema, progress, keep=5)
    for damaged in ("step-000020", "step-000030"):
        (root / damaged / "model.safetensors").write_bytes(b"")
    resumed = TrainingProgress({"setting": 1})
    assert resume_checkpoint(accelerator, list_checkpoints(root)[::-1], ema, resumed) == root / "step-000010"
    resumed.step = 20
    save_checkpoint(accelerator, root, ema, resumed, keep=1)
    assert [path.name for path in list_checkpoints(root)] == ["step-000020"]
    again = TrainingProgress({"setting": 1})
    assert resume_checkpoint(accelerator, list_checkpoints(root)[::-1], ema, again) == root / "step-000020"
    assert again.step == 20


def test_no_readable_checkpoint_names_every_one_tried(weights_dir: Path, tmp_path: Path) -> None:
    train_generator(tiny_config(weights_dir, tmp_path, max_steps=20))
    for checkpoint in (tmp_path / "checkpoints").iterdir():
        (checkpoint / "model.safetensors").write_bytes(b"\0" * 10)
    with pytest.raises(CheckpointError, match=r"No checkpoint can be resumed: .*step-000020.*step-000010.*Delete"):
        train_generator(tiny_config(weights_dir, tmp_path, resume=True))


def test_resume_with_another_model_names_the_nested_key(weights_dir: Path, tmp_path: Path) -> None:
    train_generator(tiny_config(weights_dir, tmp_path, max_steps=10))
    model = {"hidden_size": 48, "num_layers": 2, "num_heads": 4}
    with pytest.raises(ValueError, match=r"other settings \(model\.hidden_size: 32 -> 48\)\. Resume"):
        train_generator(tiny_config(weights_dir, tmp_path, resume=True, model=model))
