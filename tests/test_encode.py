"""Encoding a data set into a weight data set: resume after a crash, several processes, settings."""

from __future__ import annotations

import logging
import os
import subprocess
from pathlib import Path

import pytest
import torch
import yaml
from stage3_helpers import save_image_field

from hf_wlora.encoding import encoder as encode_module
from hf_wlora.encoding import load_weight_dataset
from hf_wlora.encoding.encoder import EncodeConfig, encode
from hf_wlora.fields import NeuralFieldConfig, NeuralFieldModel
from hf_wlora.spec import REPRESENTATIONS

GLYPHS = {"num_instances": 7, "resolution": 10}
ROOT = Path(__file__).parent.parent


@pytest.fixture(scope="module")
def field_dir(tmp_path_factory: pytest.TempPathFactory) -> str:
    return save_image_field(tmp_path_factory.mktemp("field"))


def config(field_dir: str, output_dir: Path, **overrides) -> EncodeConfig:
    settings = {"field": field_dir, "output_dir": str(output_dir), "data_options": GLYPHS, "steps": 12, "batch_size": 3}
    return EncodeConfig(**{**settings, **overrides})


def assert_same_weights(first: Path, second: Path, exact: bool = True) -> None:
    """Same rows in the same order; bit-identical values, or equal to float rounding when thread counts differ."""
    a, b = load_weight_dataset(first), load_weight_dataset(second)
    assert a.ids == b.ids and len(set(a.ids)) == len(a.ids)
    assert torch.equal(a.labels, b.labels)
    tolerance = {"rtol": 0.0, "atol": 0.0} if exact else {"rtol": 1e-4, "atol": 1e-5}
    torch.testing.assert_close(a.scores, b.scores, **tolerance)
    factors_a, factors_b = a.stacked_factors(), b.stacked_factors()
    for name in factors_a:
        torch.testing.assert_close(factors_a[name], factors_b[name], **tolerance)
    assert a.info.to_dict()["spec"] == b.info.to_dict()["spec"]


def test_encode_writes_every_instance_once(field_dir: str, tmp_path: Path) -> None:
    result = encode(config(field_dir, tmp_path / "weights"), progress=False)
    weights = load_weight_dataset(result.output_dir)
    assert weights.ids == [f"glyphs-s0-{index:06d}" for index in range(7)]
    assert weights.spec.name == "mlora_asym" and weights.info.base_field == field_dir
    assert result.score_name == "psnr" and result.figures["num_instances"] == 7
    assert torch.isfinite(weights.scores).all()
    assert weights.info.encoding["steps"] == 12 and "batch_size" not in weights.info.encoding


def test_a_hub_field_encodes_offline_from_the_cache_and_records_its_commit(
    field_dir: str, tmp_path: Path, hub, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The commit of a Hub field is recorded with the data set; offline (HF_HUB_OFFLINE=1, the field cached) it is
    read off the cached snapshot instead of asked of the Hub, which offline refused and stopped the encoding."""
    import huggingface_hub

    repo_id = hub.unique_repo_id("field")
    commit = NeuralFieldModel.from_pretrained(field_dir).push_to_hub(repo_id).oid
    online = encode(config(repo_id, tmp_path / "online", steps=2), progress=False)
    assert load_weight_dataset(online.output_dir).info.base_field_revision == commit
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)
    offline = encode(config(repo_id, tmp_path / "offline", steps=2), progress=False)
    assert load_weight_dataset(offline.output_dir).info.base_field_revision == commit
    assert_same_weights(online.output_dir, offline.output_dir)


def test_killed_run_resumes_to_the_uninterrupted_result(
    field_dir: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    encode(config(field_dir, tmp_path / "uninterrupted"), progress=False)

    real_fit, calls = encode_module.fit_instances, []

    def crash_on_third_batch(*args, **kwargs):
        calls.append(1)
        if len(calls) == 3:
            raise KeyboardInterrupt("killed")
        return real_fit(*args, **kwargs)

    monkeypatch.setattr(encode_module, "fit_instances", crash_on_third_batch)
    with pytest.raises(KeyboardInterrupt):
        encode(config(field_dir, tmp_path / "resumed"), progress=False)
    monkeypatch.setattr(encode_module, "fit_instances", real_fit)
    # the batch size only changes speed, so a resumed run may use another one
    encode(config(field_dir, tmp_path / "resumed", batch_size=2), progress=False)
    assert_same_weights(tmp_path / "uninterrupted", tmp_path / "resumed")


def test_resume_with_other_settings_is_refused(field_dir: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    def crash(*args, **kwargs):
        raise KeyboardInterrupt("killed")

    monkeypatch.setattr(encode_module, "fit_instances", crash)
    with pytest.raises(KeyboardInterrupt):
        encode(config(field_dir, tmp_path / "weights"), progress=False)
    monkeypatch.undo()
    with pytest.raises(ValueError, match="steps"):
        encode(config(field_dir, tmp_path / "weights", steps=13), progress=False)


def test_two_processes_give_the_single_process_result(field_dir: str, tmp_path: Path) -> None:
    """The real launcher on the recipe script: 2 gloo processes on CPU, each encoding every other instance."""
    encode(config(field_dir, tmp_path / "one"), progress=False)
    recipe = tmp_path / "recipe.yaml"
    settings = {**vars(config(field_dir, tmp_path / "two")), "learning_rate": None}
    recipe.write_text(yaml.safe_dump({"encode": settings}))
    command = [
        *("accelerate", "launch", "--multi_gpu", "--num_processes", "2", "--num_machines", "1"),
        *("--mixed_precision", "no", "--dynamo_backend", "no", "--main_process_port", "29517"),
        str(ROOT / "recipes" / "encode.py"),
        *("--config", str(recipe)),
    ]
    environment = {**os.environ, "ACCELERATE_USE_CPU": "1", "OMP_NUM_THREADS": "1"}
    result = subprocess.run(command, capture_output=True, text=True, timeout=300, env=environment)
    assert result.returncode == 0, result.stderr[-3000:]
    # one thread per worker against two in this process: matmul reduction order differs in the last bits
    assert_same_weights(tmp_path / "one", tmp_path / "two", exact=False)


def test_mlp_instances_start_from_the_first_fit(field_dir: str, tmp_path: Path) -> None:
    result = encode(config(field_dir, tmp_path / "mlp", representation="mlp", steps=5), progress=False)
    weights = load_weight_dataset(result.output_dir)
    assert weights.spec.name == "mlp" and weights.info.encoding["learning_rate"] == 1e-3
    assert set(weights.factors(0)) == set(weights.spec.factor_shapes())


def test_config_from_yaml_and_errors(field_dir: str, tmp_path: Path) -> None:
    path = tmp_path / "recipe.yaml"
    path.write_text(yaml.safe_dump({"encode": {"field": field_dir, "output_dir": "out", "representation": "lora"}}))
    loaded = EncodeConfig.from_yaml(path, steps=7)
    assert loaded.representation == "lora" and loaded.steps == 7 and loaded.learning_rate == 1e-2
    # mLoRA's factors start near 1 and travel far: its default rate is ten times additive LoRA's
    defaults = {
        name: EncodeConfig(field="f", output_dir="o", representation=name).learning_rate for name in REPRESENTATIONS
    }
    assert defaults == {
        "mlp": 1e-3,
        "mlp_asym": 1e-3,
        "lora": 1e-2,
        "lora_asym": 1e-2,
        "mlora": 1e-1,
        "mlora_asym": 1e-1,
    }
    assert EncodeConfig(field="f", output_dir="o", representation="mlora", learning_rate=3e-2).learning_rate == 3e-2
    with pytest.raises(ValueError, match=r"unknown key 'stepz'\. Did you mean 'steps'"):
        EncodeConfig.from_dict({"field": "f", "output_dir": "o", "stepz": 3})
    with pytest.raises(ValueError, match="representation"):
        EncodeConfig(field="f", output_dir="o", representation="dora")
    with pytest.raises(ValueError, match="batch_size"):
        EncodeConfig(field="f", output_dir="o", batch_size=0)
    with pytest.raises(ValueError, match="unknown data source"):
        encode(config(field_dir, tmp_path / "bad", data="video-folder:x"), progress=False)


def test_rows_decode_to_their_recorded_scores(field_dir: str, tmp_path: Path) -> None:
    from hf_wlora.data import GlyphImages
    from hf_wlora.encoding import representation_from_spec
    from hf_wlora.fields import render_images
    from hf_wlora.metrics import psnr

    weights = load_weight_dataset(encode(config(field_dir, tmp_path / "weights"), progress=False).output_dir)
    representation = representation_from_spec(weights.spec, NeuralFieldModel.from_pretrained(field_dir))
    images = render_images(representation.field_function(weights.stacked_factors([0, 4])), GLYPHS["resolution"])
    glyphs = GlyphImages(**GLYPHS)
    targets = torch.stack([torch.as_tensor(glyphs[index].image) for index in (0, 4)])
    torch.testing.assert_close(psnr(images, targets), weights.scores[[0, 4]], rtol=1e-4, atol=1e-4)
    other_field = NeuralFieldModel(NeuralFieldConfig(modality="image", hidden_size=16, num_layers=2)).bake()
    with pytest.raises(ValueError, match="does not match"):
        representation_from_spec(weights.spec, other_field)


def test_mlp_asym_freezes_entries_at_a_small_scale_by_default(field_dir: str) -> None:
    from hf_wlora.fields import NeuralFieldModel
    from hf_wlora.representations import MLP_KAPPA, make_representation

    field = NeuralFieldModel.from_pretrained(field_dir)
    mlp_asym = make_representation("mlp_asym", field).spec
    assert mlp_asym.kappa == MLP_KAPPA == 0.03
    layer = mlp_asym.layers[1].name
    frozen = mlp_asym.frozen_values(layer)[mlp_asym.mask(layer)]
    assert 0.024 < float(frozen.std()) < 0.036  # N(0, 0.03^2)
    assert make_representation("lora_asym", field, rank=2).spec.kappa == 1.0  # A's frozen entries gate through B
    assert make_representation("mlp_asym", field, kappa=0.5).spec.kappa == 0.5


def test_target_modules_and_the_mlp_width_are_settings_that_decode(field_dir: str, tmp_path: Path) -> None:
    from hf_wlora.representations import make_representation, representation_from_spec

    field = NeuralFieldModel.from_pretrained(field_dir)
    trunk = config(field_dir, tmp_path / "trunk", target_modules=["trunk.0.linear", "trunk.1.linear"], steps=3)
    weights = load_weight_dataset(encode(trunk, progress=False).output_dir)
    assert [layer.name for layer in weights.spec.layers] == ["trunk.0.linear", "trunk.1.linear"]
    assert weights.info.encoding["target_modules"] == ["trunk.0.linear", "trunk.1.linear"]
    assert representation_from_spec(weights.spec, field).spec == weights.spec

    narrow = config(field_dir, tmp_path / "narrow", representation="mlp", mlp_hidden_size=6, steps=3)
    weights = load_weight_dataset(encode(narrow, progress=False).output_dir)
    wide = make_representation("mlp", field).spec
    assert weights.spec.layers[0].d_out == 6 and weights.spec.num_parameters < wide.num_parameters / 3
    decoder = representation_from_spec(weights.spec, field)  # the width comes from the spec, not the base field
    assert decoder.spec == weights.spec
    with pytest.raises(ValueError, match="mlp_hidden_size sets the mlp kinds' width"):
        EncodeConfig(field="f", output_dir="o", representation="lora", mlp_hidden_size=8)
    with pytest.raises(ValueError, match="target_modules chooses the layers a LoRA adapts"):
        EncodeConfig(field="f", output_dir="o", representation="mlp", target_modules=["trunk.0.linear"])
    with pytest.raises(ValueError, match="mlp_hidden_size must be a positive integer"):
        EncodeConfig(field="f", output_dir="o", representation="mlp", mlp_hidden_size=0)


def test_a_rank_pattern_adapts_the_head_at_its_own_rank(field_dir: str, tmp_path: Path) -> None:
    from hf_wlora.representations import load_base_field, representation_from_spec

    modules = ["input_proj.linear", "trunk.0.linear", "head.linear"]
    settings = {"target_modules": modules, "rank_pattern": {"head.linear": 3}, "steps": 3}
    result = encode(config(field_dir, tmp_path / "weights", **settings), progress=False)
    weights = load_weight_dataset(result.output_dir)
    ranks = {layer.name: layer.r for layer in weights.spec.layers}
    assert ranks == {"input_proj.linear": 4, "trunk.0.linear": 4, "head.linear": 3}
    assert weights.info.encoding["rank_pattern"] == {"head.linear": 3}
    rebuilt = representation_from_spec(weights.spec, load_base_field(field_dir))  # the data set's own layers and ranks
    assert rebuilt.spec.factor_shapes() == weights.spec.factor_shapes()


def test_a_representation_chosen_on_the_command_line_fits_at_its_own_rate(tmp_path: Path, monkeypatch, capsys) -> None:
    """A recipe's learning rate is tuned for its own kind: `--representation` alone takes the new kind's default."""
    import argparse
    from types import SimpleNamespace

    from hf_wlora.encoding.command import add_encode_arguments, run_encode_command
    from hf_wlora.representations import DEFAULT_LEARNING_RATES

    recipe = tmp_path / "recipe.yaml"
    recipe.write_text(yaml.safe_dump({"encode": {"field": "f", "output_dir": "o", "learning_rate": 0.1}}))
    seen = []
    result = SimpleNamespace(output_dir="o", score_name="psnr", figures={})
    monkeypatch.setattr(encode_module, "encode", lambda config: seen.append(config) or result)
    parser = argparse.ArgumentParser()
    add_encode_arguments(parser)
    cases = [
        ([], 0.1),
        (["--representation", "mlora_asym"], 0.1),  # the recipe's own (default) kind keeps the recipe's rate
        (["--representation", "mlp"], DEFAULT_LEARNING_RATES["mlp"]),
        (["--representation", "lora", "--learning_rate", "0.03"], 0.03),
    ]
    for arguments, rate in cases:
        run_encode_command(parser.parse_args(["--config", str(recipe), *arguments]))
        assert seen[-1].learning_rate == rate, arguments
    assert [config.representation for config in seen] == ["mlora_asym", "mlora_asym", "mlp", "lora"]
    assert "sets learning_rate 0.1 for mlora_asym; fitting mlp at its default 0.001" in capsys.readouterr().out


def test_shapes_without_a_mesh_are_named_by_their_ids(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    torch.manual_seed(0)
    field = NeuralFieldModel(NeuralFieldConfig(modality="shape", hidden_size=16, num_layers=2)).bake()
    with torch.no_grad():  # positive everywhere: no surface, so no mesh and no Chamfer
        field.head.linear.weight.zero_()
        field.head.linear.bias.fill_(0.5)
    field.save_pretrained(tmp_path / "field")
    settings = {"data": "builtin-shapes", "data_options": {"num_instances": 3}, "steps": 1, "batch_size": 2}
    with caplog.at_level(logging.WARNING, logger="hf_wlora.encoding.encoder"):
        result = encode(
            EncodeConfig(
                field=str(tmp_path / "field"),
                output_dir=str(tmp_path / "weights"),
                **settings,
                points_per_shape=64,
                mesh_resolution=12,
            ),
            progress=False,
        )
    ids = load_weight_dataset(result.output_dir).ids
    assert result.figures["num_non_finite_scores"] == 3
    assert f"No chamfer for instance(s) {ids[2:]}: their score is NaN." in caplog.text  # the second batch's, by id


def test_the_cards_decoding_code_runs_on_a_modulated_field(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The encoding bakes a modulated field (stage 1's `modulated_field/`) before fitting; the card's snippet must
    load the field the same way, or the adapter would not fit the layers it was fitted on."""
    torch.manual_seed(0)
    NeuralFieldModel(NeuralFieldConfig(modality="image", hidden_size=16, num_layers=2)).save_pretrained(
        tmp_path / "modulated"
    )
    output = tmp_path / "weights"
    encode(
        EncodeConfig(
            field=str(tmp_path / "modulated"),
            output_dir=str(output),
            data_options={"num_instances": 8, "resolution": 8},
            steps=2,
            batch_size=8,
        ),
        progress=False,
    )
    snippet = (output / "README.md").read_text().split("```python\n")[1].split("```")[0]
    assert "load_base_field(" in snippet
    monkeypatch.chdir(tmp_path)  # the snippet writes its adapter folder where it runs
    namespace: dict = {}
    exec(compile(snippet, "the weight data set's card", "exec"), namespace)
    assert namespace["image"].shape == (1, 128, 128, 3)
