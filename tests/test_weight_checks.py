"""Weights of another representation, broken adapter files and bad pipeline arguments are refused, by name.

Issue 14, items 5 and 6: an mlora row decodes through an mlora_asym pipeline (same shapes) only with a word, an
adapter file whose frozen entries or tensors are wrong never loads silently, and every bad argument of a pipeline
call fails before the first denoising step.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from peft import PeftModel, get_peft_model
from safetensors.torch import load_file, save_file
from stage3_helpers import make_field, make_pipeline, make_weights

from hf_wlora import MLoraConfig
from hf_wlora.encoding import (
    WeightDatasetInfo,
    WeightDatasetWriter,
    load_weight_dataset,
    make_representation,
    row_to_peft_adapter,
)
from hf_wlora.pipelines.generator_training.config import GeneratorTrainingConfig
from hf_wlora.representations import peft_model_from_factors, save_peft_adapter

WEIGHTS_FILE = "adapter_model.safetensors"


def write_rows(folder: Path, representation: str, count: int = 3) -> Path:
    """A weight data set of `count` rows of `representation` (rank 2) on the tiny field of `make_pipeline`."""
    field = make_field()
    spec = make_representation(representation, field, rank=2).spec
    if representation == "mlora_asym":
        vectors = make_weights(count, field)["vectors"]
    else:  # the same numbers, read as another representation of the same shapes
        vectors = make_weights(count, field)["vectors"] + 0.1
    info = WeightDatasetInfo(spec=spec, modality="image", base_field="tiny-field", class_names=["ring", "bar"])
    writer = WeightDatasetWriter(folder, info)
    writer.write(
        [f"item-{index}" for index in range(count)],
        [index % 2 for index in range(count)],
        spec.unflatten(vectors),
        torch.full((count,), 30.0),
        indices=list(range(count)),
    )
    return writer.finalize()


# -- item 5: weights of another representation ----------------------------------------------------------------------
@pytest.mark.parametrize("representation", ["mlora", "lora"])
def test_a_weight_data_set_of_another_representation_is_refused_by_name(tmp_path: Path, representation: str) -> None:
    pipe = make_pipeline()
    weights = load_weight_dataset(write_rows(tmp_path / "weights", representation))
    message = rf"\({representation!r} weights\) does not match this WeightSpacePipeline \('mlora_asym' weights\)"
    with pytest.raises(ValueError, match=message):
        pipe.decode(weights)
    with pytest.raises(ValueError, match=message):
        pipe.to_peft_model(weights, 0)
    with pytest.raises(ValueError, match=rf"{representation!r} weights.*asymmetric: True != False"):
        weights.check_compatible(pipe.transformer)
    factors = weights.factors(0)  # plain tensors carry no spec; their frozen entries betray them on conversion
    with pytest.raises(ValueError, match=r"Factor 'input_proj.linear.A' has \d+ values? at the frozen entries"):
        peft_model_from_factors(pipe.spec, pipe.field, factors)
    with pytest.raises(ValueError, match="not 'mlora_asym' weights"):
        save_peft_adapter(pipe.spec, factors, tmp_path / "adapter")
    assert not (tmp_path / "adapter").exists()


def test_weights_of_the_pipelines_own_representation_decode_and_convert(tmp_path: Path) -> None:
    pipe = make_pipeline()
    weights = load_weight_dataset(write_rows(tmp_path / "weights", "mlora_asym"))
    weights.check_compatible(pipe.transformer)
    first_two = weights.select([0, 1])
    assert len(first_two) == 2 and first_two.spec == weights.spec and first_two.ids == ["item-0", "item-1"]
    decoded = pipe.decode(first_two, output_type="pt")
    expected = pipe.decode(weights.stacked_factors([0, 1]), output_type="pt")  # plain tensors work as before
    assert torch.equal(decoded.images, expected.images) and decoded.images.shape[0] == 2
    model = pipe.to_peft_model(weights, 2)
    folder = row_to_peft_adapter(weights, 2, tmp_path / "adapter")
    reloaded = PeftModel.from_pretrained(make_field(), folder)
    coords = torch.rand(5, 2) * 2 - 1
    torch.testing.assert_close(reloaded(coords).values, model(coords).values)
    with pytest.raises(IndexError, match="out of range for 3 samples"):
        pipe.to_peft_model(weights, 3)


@pytest.fixture
def adapter_folder(tmp_path: Path) -> Path:
    """An mlora_asym adapter folder of one valid instance."""
    pipe = make_pipeline()
    factors = {name: value[0] for name, value in pipe.spec.unflatten(make_weights(1, pipe.field)["vectors"]).items()}
    return save_peft_adapter(pipe.spec, factors, tmp_path / "adapter")


def edited_copy(folder: Path, target: Path, edit) -> Path:
    """A copy of the adapter `folder` whose tensors `edit(state)` changed in place."""
    shutil.copytree(folder, target)
    state = load_file(folder / WEIGHTS_FILE)
    edit(state)
    save_file(state, target / WEIGHTS_FILE)
    return target


@pytest.mark.parametrize("low_cpu_mem_usage", [False, True])
def test_a_saved_adapter_that_breaks_its_mask_does_not_load(
    adapter_folder: Path, tmp_path: Path, low_cpu_mem_usage: bool
) -> None:
    key = "base_model.model.trunk.0.linear.mlora_A"
    spec = make_pipeline().spec
    mask = spec.mask("trunk.0.linear")

    def unfreeze(state: dict[str, torch.Tensor]) -> None:
        state[key] = torch.where(mask, torch.ones_like(state[key]), state[key])

    broken = edited_copy(adapter_folder, tmp_path / "broken", unfreeze)
    with pytest.raises(ValueError, match=rf"{WEIGHTS_FILE}.*'{key}' has {int(mask.sum())} values at frozen entries"):
        PeftModel.from_pretrained(make_field(), broken, low_cpu_mem_usage=low_cpu_mem_usage)
    PeftModel.from_pretrained(make_field(), adapter_folder, low_cpu_mem_usage=low_cpu_mem_usage)  # the intact one


def test_an_adapter_trained_with_weight_decay_saves_and_loads(tmp_path: Path) -> None:
    """Weight decay moves the nonzero frozen entries of an additive A (they get no gradient; mLoRA freezes zeros,
    which decay keeps); the saved A is the one the layer uses, so the saved adapter loads and computes the same."""
    config = MLoraConfig(mode="additive", asymmetric_mask=True, target_modules=["trunk.0.linear"], init_weights=False)
    model = get_peft_model(make_field(), config)
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-2, weight_decay=0.5)
    coords = torch.rand(32, 2) * 2 - 1
    for _ in range(3):
        optimizer.zero_grad()
        model(coords).values.square().mean().backward()
        optimizer.step()
    layer = model.base_model.model.trunk[0].linear
    assert not torch.equal(layer.mlora_A["default"], layer.effective_A("default"))  # the raw parameter drifted
    model.save_pretrained(tmp_path / "trained")
    reloaded = PeftModel.from_pretrained(make_field(), tmp_path / "trained")
    assert torch.equal(reloaded(coords).values, model(coords).values)


@pytest.mark.parametrize("low_cpu_mem_usage", [False, True])
def test_a_saved_adapter_missing_a_tensor_does_not_load(
    adapter_folder: Path, tmp_path: Path, low_cpu_mem_usage: bool
) -> None:
    key = "base_model.model.input_proj.linear.mlora_B"
    broken = edited_copy(adapter_folder, tmp_path / "broken", lambda state: state.pop(key))
    with pytest.raises(ValueError, match=rf"{WEIGHTS_FILE} of adapter 'default' lacks 1 tensor.*\['{key}'\]"):
        PeftModel.from_pretrained(make_field(), broken, low_cpu_mem_usage=low_cpu_mem_usage)
    model = PeftModel.from_pretrained(make_field(), adapter_folder)
    with pytest.raises(ValueError, match=rf"adapter 'second' lacks 1 tensor.*\['{key}'\]"):
        model.load_adapter(broken, adapter_name="second")


# -- item 6: the pipeline's arguments -------------------------------------------------------------------------------
def _no_denoising(pipe) -> None:
    """Make any denoising step fail loudly, so an argument error is seen to come before the first one."""

    def forbidden(*args, **kwargs):
        raise AssertionError("a denoising step ran before the argument was refused")

    pipe.transformer.forward = forbidden


def test_numpy_class_labels_are_taken_like_lists() -> None:
    pipe = make_pipeline()
    options = {"num_inference_steps": 2, "output_type": "weights", "generator": torch.Generator().manual_seed(0)}
    reference = pipe(2, class_labels=[1, 0], **options)
    for labels in (np.array([1, 0]), np.array([1, 0], dtype=np.int32), torch.tensor([1, 0])):
        options["generator"] = torch.Generator().manual_seed(0)
        out = pipe(2, class_labels=labels, **options)
        assert out.class_labels.tolist() == [1, 0]
        assert all(torch.equal(out.weights[name], reference.weights[name]) for name in reference.weights)
    assert pipe(2, class_labels=np.int64(1), num_inference_steps=1, output_type="weights").class_labels.tolist() == [
        1,
        1,
    ]


@pytest.mark.parametrize(
    "labels",
    [1.0, 1.5, [1.0, 0.0], np.array([1.0, 0.0]), torch.tensor([1.0, 0.0]), True, [[1], [0]], b"ring"],
)
def test_class_labels_that_are_not_indices_or_names_are_refused(labels) -> None:
    pipe = make_pipeline()
    _no_denoising(pipe)
    with pytest.raises(ValueError, match=r"is not a class index or name: class_labels takes integers 0..1 or"):
        pipe(2, class_labels=labels, num_inference_steps=2)


def test_decoding_zero_rows_is_refused() -> None:
    pipe = make_pipeline()
    for output_type in ("pil", "pt", "weights"):
        with pytest.raises(ValueError, match=r"hold no instance: got shape \(0, 196\)"):
            pipe.decode(torch.zeros(0, 196), output_type=output_type)
    empty = {name: torch.zeros(0, *shape) for name, shape in pipe.spec.factor_shapes().items()}
    with pytest.raises(ValueError, match="hold no instance"):
        pipe.decode(empty)


@pytest.mark.parametrize("bad", [0, 1, "8", 8.0, True, -3])
def test_decode_refuses_bad_resolutions(bad) -> None:
    pipe = make_pipeline()
    weights = torch.zeros(1, 196)
    with pytest.raises(ValueError, match=rf"resolution must be an integer >= 2, got {bad!r}"):
        pipe.decode(weights, resolution=bad)
    with pytest.raises(ValueError, match=rf"mesh_resolution must be an integer >= 2, got {bad!r}"):
        pipe.decode(weights, mesh_resolution=bad)
    _no_denoising(pipe)
    for name in ("resolution", "mesh_resolution"):
        with pytest.raises(ValueError, match=rf"{name} must be an integer >= 2"):
            pipe(1, class_labels=0, num_inference_steps=2, **{name: bad})


@pytest.mark.parametrize("bad", [float("nan"), float("inf"), -float("inf"), np.float32("nan"), "2"])
def test_guidance_scale_must_be_a_finite_number_before_any_step(bad) -> None:
    pipe = make_pipeline()
    _no_denoising(pipe)
    with pytest.raises(ValueError, match=r"guidance_scale must be a finite number"):
        pipe(1, class_labels=0, guidance_scale=bad, num_inference_steps=2)


@pytest.mark.parametrize("bad", [float("nan"), float("inf"), "2"])
def test_the_training_config_refuses_a_non_finite_grid_guidance_scale(bad) -> None:
    with pytest.raises(ValueError, match=rf"grid_guidance_scale must be a finite number, got {bad!r}"):
        GeneratorTrainingConfig(weights="some/weights", grid_guidance_scale=bad)
