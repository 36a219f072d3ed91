"""Configuration and command-line errors: numbers written as text, wrong types, bad folders, mismatched data.

Every bad setting fails before any work is done or any folder is created, with a message that names the file, the
setting and the fix.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest
import torch
from stage3_helpers import save_image_field

from hf_wlora.cli import main
from hf_wlora.encoding.encoder import EncodeConfig, encode
from hf_wlora.fields.auto_decoder import FieldTrainingConfig
from hf_wlora.pipelines.generator_training import GeneratorTrainingConfig
from hf_wlora.representations import load_base_field
from hf_wlora.reproduction.config import ReproduceConfig
from hf_wlora.tuners.mlora.config import MLoraConfig

FIELD_SECTION = """\
train_field:
  data: builtin-glyphs
  data_options: {num_instances: 4, resolution: 8}
  stages: [{steps: 2, batch_size: 2, resolution: 8}]
"""
TRAIN_SECTION = "train:\n  weights: somewhere\n  steps: 10\n  warmup_steps: 1\n"


@pytest.fixture(scope="module")
def image_field(tmp_path_factory: pytest.TempPathFactory) -> str:
    return save_image_field(tmp_path_factory.mktemp("image-field"), hidden_size=8, num_layers=1)


def recipe(folder: Path, text: str) -> Path:
    path = folder / "recipe.yaml"
    path.write_text(text)
    return path


def encode_section(field: str, output_dir: Path, extra: str = "") -> str:
    return (
        f"encode:\n  field: {field}\n  output_dir: {output_dir}\n  data_options: {{num_instances: 2, resolution: 8}}\n"
        f"  steps: 2\n  batch_size: 2\n{extra}"
    )


# --- numbers written as text --------------------------------------------------------------------------------------


def test_unquoted_exponent_floats_are_numbers(tmp_path: Path, image_field: str) -> None:
    """PyYAML (YAML 1.1) reads `1e-2` and `1.0e2` as text; a float setting reads them as the numbers they are."""
    field = FieldTrainingConfig.from_yaml(
        recipe(tmp_path, FIELD_SECTION + "  lr_field: 1e-2\n  kl_weight: 1.0e-5\n  adam_betas: [9e-1, 0.99]\n")
    )
    assert (field.lr_field, field.kl_weight, field.adam_betas) == (0.01, 1e-5, (0.9, 0.99))
    train = GeneratorTrainingConfig.from_yaml(recipe(tmp_path, TRAIN_SECTION + "  learning_rate: 3e-4\n"))
    assert train.learning_rate == 3e-4 and isinstance(train.learning_rate, float)
    config = EncodeConfig.from_yaml(
        recipe(tmp_path, encode_section(image_field, tmp_path / "out", "  learning_rate: 1e-2\n  alpha: 2e0\n"))
    )
    assert (config.learning_rate, config.alpha) == (0.01, 2.0)


@pytest.mark.parametrize("value", ["fast", "'1e-2x'", "nan"])
def test_other_text_is_never_a_number(tmp_path: Path, value: str) -> None:
    path = recipe(tmp_path, FIELD_SECTION + f"  lr_field: {value}\n")
    with pytest.raises(ValueError, match=r"recipe\.yaml: lr_field must be a positive number"):
        FieldTrainingConfig.from_yaml(path)


@pytest.mark.parametrize(
    ("reader", "text", "where"),
    [
        (FieldTrainingConfig, FIELD_SECTION.replace("batch_size: 2", 'batch_size: "2"'), "stages[0]: batch_size"),
        (GeneratorTrainingConfig, TRAIN_SECTION + '  batch_size: "2"\n', "batch_size"),
        (GeneratorTrainingConfig, TRAIN_SECTION + "  batch_size: 1e3\n", "batch_size"),
    ],
    ids=["stage", "quoted", "exponent"],
)
def test_an_integer_setting_refuses_text(tmp_path: Path, reader: Any, text: str, where: str) -> None:
    with pytest.raises(ValueError, match=rf"recipe\.yaml: {re.escape(where)} must be an integer, got the string"):
        reader.from_yaml(recipe(tmp_path, text))


def test_a_quoted_integer_names_the_fix(tmp_path: Path, image_field: str) -> None:
    path = recipe(tmp_path, encode_section(image_field, tmp_path / "out").replace("batch_size: 2", 'batch_size: "2"'))
    with pytest.raises(ValueError, match=r"recipe\.yaml: batch_size must be an integer, got the string '2'") as error:
        EncodeConfig.from_yaml(path)
    assert "without quotes (batch_size: 2)" in str(error.value)


def test_encode_settings_of_the_python_api_are_typed(image_field: str) -> None:
    """Numbers as text or bools fail with the setting's name, not a TypeError from deep inside."""
    base = {"field": image_field, "output_dir": "o"}
    for change, message in [
        ({"learning_rate": "1e-2"}, "learning_rate must be a positive number, got '1e-2'"),
        ({"steps": True}, "steps must be a positive integer, got True"),
        ({"seed": "0"}, "seed must be a non-negative integer, got '0'"),
        ({"alpha": True}, "alpha must be a positive number, got True"),
        ({"mask_ratio": 1.0}, r"mask_ratio must be a number in \[0, 1\), got 1.0"),
        ({"points_per_step": 0}, "points_per_step must be a positive integer"),
        ({"weight_decay": -0.1}, "weight_decay must be >= 0"),
        ({"weight_decay": "0.1"}, "weight_decay must be a finite number, got '0.1'"),
        ({"rank_pattern": {"head.linear": 0}}, r"rank_pattern\['head.linear'\] must be a positive integer"),
        ({"rank_pattern": {"head.linear": 3}, "representation": "mlp"}, "mlp has no rank"),
        ({"device": "gpu"}, "device must name a torch device such as 'cpu' or 'cuda:0', got 'gpu'"),
    ]:
        with pytest.raises(ValueError, match=message):
            EncodeConfig(**base, **change)


def test_a_device_this_machine_lacks_is_refused_before_any_work(image_field: str) -> None:
    assert EncodeConfig(field=image_field, output_dir="o", device="cpu").device == "cpu"
    assert "device" not in EncodeConfig(field=image_field, output_dir="o").result_settings()  # speed, not weights
    if torch.cuda.is_available():
        missing = f"cuda:{torch.cuda.device_count()}"
        with pytest.raises(ValueError, match=f"asks for GPU {torch.cuda.device_count()}"):
            EncodeConfig(field=image_field, output_dir="o", device=missing)
    else:
        with pytest.raises(ValueError, match=r"torch.cuda.is_available\(\) is False"):
            EncodeConfig(field=image_field, output_dir="o", device="cuda")


# --- folders and files --------------------------------------------------------------------------------------------


def test_an_output_dir_that_is_a_file_fails_before_any_work(tmp_path: Path, image_field: str) -> None:
    taken = tmp_path / "results.txt"
    taken.write_text("keep me")
    for output_dir in (taken, taken / "run"):
        message = rf"output_dir {re.escape(str(output_dir))} .*{re.escape(str(taken))} is a file"
        with pytest.raises(ValueError, match=message):
            FieldTrainingConfig.from_yaml(recipe(tmp_path, FIELD_SECTION), output_dir=str(output_dir))
        with pytest.raises(ValueError, match=message):
            GeneratorTrainingConfig.from_yaml(recipe(tmp_path, TRAIN_SECTION), output_dir=str(output_dir))
        with pytest.raises(ValueError, match=message):
            EncodeConfig(field=image_field, output_dir=str(output_dir))
        with pytest.raises(ValueError, match=message):
            ReproduceConfig(scale="tiny", output_dir=str(output_dir))
    assert taken.read_text() == "keep me"


def test_a_missing_field_folder_is_named(tmp_path: Path) -> None:
    missing = tmp_path / "outputs" / "glyphs" / "field"
    with pytest.raises(
        ValueError, match=rf"the folder {re.escape(str(missing))} does not exist\. .*train-field"
    ) as error:
        load_base_field(str(missing))
    assert "Repo id must be" not in str(error.value)
    output_dir = tmp_path / "weights"
    path = recipe(tmp_path, encode_section(str(missing), output_dir))
    with pytest.raises(ValueError, match=r"the folder .* does not exist"):
        main(["encode", "--config", str(path)])
    with pytest.raises(ValueError, match=r"the folder .*nothing-here does not exist"):
        main(["encode", "--config", str(path), "--field", str(tmp_path / "nothing-here")])
    assert not output_dir.exists()


def test_a_hub_id_that_cannot_be_looked_up_names_the_missing_folder(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Offline (as every test but the Hub tests), the Hub's answer comes after what was looked for locally."""
    monkeypatch.chdir(tmp_path)
    with pytest.raises(OSError, match=r"'user/field': the folder .*user/field does not exist, and loading it as a Hub"):
        load_base_field("user/field")


def test_a_hub_id_that_is_no_repo_is_named(hub: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    repo_id = hub.unique_repo_id("no-such-field")
    folder = re.escape(str(tmp_path / repo_id))
    with pytest.raises(ValueError, match=rf"the folder {folder} does not exist, and no Hub repo '{repo_id}' was found"):
        load_base_field(repo_id)


def test_data_of_another_modality_than_the_field_fails_before_any_folder(tmp_path: Path, image_field: str) -> None:
    output_dir = tmp_path / "weights"
    config = EncodeConfig(field=image_field, output_dir=str(output_dir), data="builtin-shapes", steps=2)
    with pytest.raises(ValueError, match=r"models images.*'builtin-shapes' gives shapes.*field trained on shapes"):
        encode(config, progress=False)
    assert not output_dir.exists()


# --- the document's shape -----------------------------------------------------------------------------------------


@pytest.mark.parametrize("reader", [FieldTrainingConfig, GeneratorTrainingConfig, EncodeConfig])
@pytest.mark.parametrize("text", ["- a\n- b\n", "", "just text\n"], ids=["list", "empty", "text"])
def test_a_recipe_that_is_not_a_mapping_is_named(tmp_path: Path, reader: Any, text: str) -> None:
    path = recipe(tmp_path, text)
    with pytest.raises(
        ValueError, match=r"recipe\.yaml: a recipe must be a mapping of sections to settings \(here '\w+:'"
    ) as error:
        reader.from_yaml(path)
    assert "got" in str(error.value)


def test_a_section_that_is_not_a_mapping_is_named(tmp_path: Path) -> None:
    for reader, section in [
        (FieldTrainingConfig, "train_field"),
        (EncodeConfig, "encode"),
        (GeneratorTrainingConfig, "train"),
    ]:
        with pytest.raises(
            ValueError,
            match=rf"recipe\.yaml: the '{section}' section must be a mapping of settings to values, got list",
        ):
            reader.from_yaml(recipe(tmp_path, f"{section}:\n  - steps: 3\n"))


# --- the mLoRA tuner ----------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"r": True}, "r must be a positive integer, got True"),
        ({"alpha": True}, "alpha must be a positive number, got True"),
        ({"alpha": "2"}, "alpha must be a positive number, got '2'"),
        ({"kappa": True}, "kappa must be a positive number, got True"),
        ({"init_std": True}, "init_std must be a positive number, got True"),
        ({"mask_ratio": "0.5"}, r"mask_ratio must be a number in \[0, 1\), got '0.5'"),
        ({"asymmetric_mask": 1}, "asymmetric_mask must be True or False, got 1"),
    ],
)
def test_mlora_config_refuses_bools_for_numbers_and_numbers_for_bools(change: dict[str, Any], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        MLoraConfig(**change)
