"""Batched per-instance fitting of the six representations."""

from __future__ import annotations

import dataclasses

import pytest
import torch

from hf_wlora.data import GlyphImages
from hf_wlora.fields import NeuralFieldConfig, NeuralFieldModel, image_coordinates
from hf_wlora.metrics import psnr
from hf_wlora.representations import FitSettings, fit_instances, image_loss, loss_for, make_representation, sdf_loss
from hf_wlora.spec import REPRESENTATIONS

RESOLUTION = 12


@pytest.fixture(scope="module")
def base_field() -> NeuralFieldModel:
    torch.manual_seed(0)
    return NeuralFieldModel(NeuralFieldConfig(modality="image", hidden_size=32, num_layers=2)).bake()


@pytest.fixture(scope="module")
def glyphs() -> tuple[torch.Tensor, torch.Tensor]:
    data = GlyphImages(num_instances=5, resolution=RESOLUTION, seed=0)
    targets = torch.stack([torch.as_tensor(data[i].image).reshape(-1, 3) for i in range(len(data))])
    return image_coordinates(RESOLUTION, RESOLUTION), targets


def settings_for(name: str, steps: int = 25) -> FitSettings:
    return FitSettings(steps=steps, learning_rate=1e-3 if name.startswith("mlp") else 1e-2, points_per_step=100)


@pytest.mark.parametrize("name", REPRESENTATIONS)
def test_batched_fitting_equals_one_at_a_time(name: str, base_field, glyphs) -> None:
    coords, targets = glyphs
    representation = make_representation(name, base_field, rank=4)
    batched = fit_instances(representation, coords, targets, settings_for(name))
    for index in range(len(targets)):  # bit for bit, wherever the instance lies in the batch
        alone = fit_instances(representation, coords, targets[index : index + 1], settings_for(name))
        for factor, value in batched.factors.items():
            assert torch.equal(value[index], alone.factors[factor][0]), (index, factor)
        assert torch.equal(batched.losses[index], alone.losses[0])
    assert batched.factors.keys() == representation.spec.factor_shapes().keys()


@pytest.mark.parametrize("points_per_step", [None, 100])
@pytest.mark.parametrize("name", ["mlora_asym", "lora", "mlp"])
def test_one_shared_grid_fits_exactly_as_per_instance_copies(name: str, points_per_step, base_field, glyphs) -> None:
    """(P, d) coordinates shared by every instance take the fast path (the Fourier features encoded once, the grid
    kept expanded); N real copies of the grid take the general one: the fits are bit-identical."""
    coords, targets = glyphs
    representation = make_representation(name, base_field, rank=4)
    settings = dataclasses.replace(settings_for(name, steps=5), points_per_step=points_per_step)
    shared = fit_instances(representation, coords, targets, settings)
    copies = fit_instances(representation, coords.expand(len(targets), -1, -1).clone(), targets, settings)
    for factor, value in shared.factors.items():
        assert torch.equal(value, copies.factors[factor]), factor
    assert torch.equal(shared.losses, copies.losses)


@pytest.mark.parametrize("name", REPRESENTATIONS)
def test_fitting_lowers_the_loss_and_keeps_frozen_entries(name: str, base_field, glyphs) -> None:
    coords, targets = glyphs
    representation = make_representation(name, base_field, rank=4)
    loss_fn = loss_for("image")
    start = representation.initial_factors()
    start_outputs = representation.forward(
        {k: v.expand(5, *v.shape) for k, v in start.items()}, coords.expand(5, -1, -1)
    )
    result = fit_instances(representation, coords, targets, settings_for(name, steps=40))
    fitted_outputs = representation.forward(result.factors, coords.expand(5, -1, -1))
    assert (loss_fn(fitted_outputs, targets) < 0.9 * loss_fn(start_outputs, targets)).all()
    spec = representation.spec
    for layer in spec.layers if spec.asymmetric else ():
        masked = spec.masked_factor(layer.name)
        mask = spec.mask(layer.name)
        frozen = spec.frozen_values(layer.name)
        assert torch.equal(result.factors[masked][:, mask], frozen[mask].expand(5, -1))


def test_every_instance_starts_from_the_same_factors(base_field, glyphs) -> None:
    coords, targets = glyphs
    representation = make_representation("mlora_asym", base_field, rank=4)
    same_targets = targets[:1].expand(3, -1, -1)
    result = fit_instances(representation, coords, same_targets, settings_for("mlora_asym", steps=5))
    for value in result.factors.values():
        assert torch.equal(value[0], value[1]) and torch.equal(value[0], value[2])
    again = make_representation("mlora_asym", base_field, rank=4)
    for name, value in representation.initial_factors().items():
        assert torch.equal(value, again.initial_factors()[name])


def test_mlp_initial_factors_can_be_set_to_a_fit(base_field, glyphs) -> None:
    coords, targets = glyphs
    representation = make_representation("mlp_asym", base_field)
    first = fit_instances(representation, coords, targets[:1], settings_for("mlp_asym", steps=3))
    representation.set_initial_factors({name: value[0] for name, value in first.factors.items()})
    for name, value in representation.initial_factors().items():
        assert torch.equal(value, first.factors[name][0])
    with pytest.raises(ValueError, match="names and shapes"):
        representation.set_initial_factors({"nope": torch.zeros(1)})


def test_reconstruction_metric_and_field_function(base_field, glyphs) -> None:
    coords, targets = glyphs
    representation = make_representation("lora", base_field, rank=4)
    result = fit_instances(representation, coords, targets, settings_for("lora", steps=60))
    values = representation.field_function(result.factors)(coords)
    assert values.shape == (5, RESOLUTION * RESOLUTION, 3)
    scores = psnr(values, targets)
    assert scores.shape == (5,) and (scores > 15).all()


def test_losses_and_bad_input(base_field, glyphs) -> None:
    outputs, targets = torch.zeros(2, 4, 1), torch.tensor([0.5, -0.05, 0.0, 0.02]).reshape(1, 4, 1).expand(2, -1, -1)
    torch.testing.assert_close(sdf_loss(outputs, targets), torch.full((2,), (0.1 + 0.05 + 0.0 + 0.02) / 4))
    torch.testing.assert_close(image_loss(torch.ones(1, 2, 3), torch.zeros(1, 2, 3)), torch.ones(1))
    with pytest.raises(ValueError, match="modality"):
        loss_for("audio")
    coords, targets = glyphs
    representation = make_representation("mlora", base_field)
    bad = targets.clone()
    bad[0, 0, 0] = float("nan")
    with pytest.raises(ValueError, match="NaN"):
        fit_instances(representation, coords, bad, settings_for("mlora"))
    with pytest.raises(ValueError, match="steps"):
        FitSettings(steps=0)
    with pytest.raises(ValueError, match="baked"):
        make_representation("mlora", NeuralFieldModel(NeuralFieldConfig(modality="image", hidden_size=8)))
    with pytest.raises(ValueError, match="Unknown representation"):
        make_representation("dora", base_field)
    # the adapter kinds check their factors once per call, before any chunk runs
    start = {name: value[None] for name, value in representation.initial_factors().items()}
    with pytest.raises(ValueError, match=r"missing \['trunk.0.linear.A'\]"):
        representation.forward({k: v for k, v in start.items() if k != "trunk.0.linear.A"}, coords[None])
    with pytest.raises(ValueError, match="same leading instance dimension"):
        representation.loss_backward(start, coords.expand(2, *coords.shape), targets[:2], image_loss, chunk_size=1)
    with pytest.raises(ValueError, match=r"targets \(5, 0, 3\) hold no instances or no points"):
        fit_instances(representation, coords[:0], targets[:, :0], settings_for("mlora"))
    # so do the mlp kinds (functional_call would ignore a misnamed factor and use the shared weight for a missing one)
    mlp = make_representation("mlp", base_field)
    start = {name: value[None] for name, value in mlp.initial_factors().items()}
    with pytest.raises(ValueError, match=r"missing \['trunk.0.linear.weight'\], unexpected \['trunk.0.weight'\]"):
        mlp.forward(
            {("trunk.0.weight" if k == "trunk.0.linear.weight" else k): v for k, v in start.items()}, coords[None]
        )
    with pytest.raises(
        ValueError, match=r"'input_proj.linear.weight' has shape \(1, 32, 130\); expected \(2, \*\(32, 130\)\)"
    ):
        mlp.forward(start, coords.expand(2, *coords.shape))


def test_a_cosine_schedule_ends_at_rate_zero_and_changes_the_fit(base_field, glyphs) -> None:
    coords, targets = glyphs
    representation = make_representation("mlora_asym", base_field)
    constant = FitSettings(steps=6, learning_rate=1e-1, points_per_step=100)
    cosine = FitSettings(steps=6, learning_rate=1e-1, points_per_step=100, lr_schedule="cosine")
    fits = {
        name: fit_instances(representation, coords, targets, settings).factors
        for name, settings in (("constant", constant), ("cosine", cosine))
    }
    assert any(not torch.equal(fits["constant"][key], fits["cosine"][key]) for key in fits["cosine"])
    # the first step is at the full rate in both: one step of each is the same fit
    first = [FitSettings(steps=1, learning_rate=1e-1, lr_schedule=schedule) for schedule in ("constant", "cosine")]
    one_step = [fit_instances(representation, coords, targets, settings).factors for settings in first]
    assert all(torch.equal(one_step[0][key], one_step[1][key]) for key in one_step[0])
    assert FitSettings.from_encoding({"lr_schedule": "cosine"}).lr_schedule == "cosine"
    assert FitSettings.from_encoding({}).lr_schedule == "constant"  # data sets encoded before the setting existed
    with pytest.raises(ValueError, match="lr_schedule must be one of"):
        FitSettings(lr_schedule="linear")


def test_weight_decay_pulls_every_factor_towards_its_start(base_field, glyphs) -> None:
    coords, targets = glyphs
    representation = make_representation("mlora_asym", base_field)
    start = representation.initial_factors()
    plain = fit_instances(representation, coords, targets, FitSettings(steps=4, learning_rate=1e-1)).factors
    # rate x decay = 1: every step ends exactly at the start again, whatever Adam did
    pinned = FitSettings(steps=4, learning_rate=1e-1, weight_decay=10.0)
    for name, value in fit_instances(representation, coords, targets, pinned).factors.items():
        assert torch.equal(value, start[name].expand_as(value))
    # a milder decay keeps every fit closer to the start than plain Adam, and batching still changes nothing
    mild = FitSettings(steps=4, learning_rate=1e-1, weight_decay=1.0)
    decayed = fit_instances(representation, coords, targets, mild).factors
    alone = fit_instances(representation, coords, targets[2:3], mild).factors
    distance = {
        label: sum((fit[name] - start[name]).flatten(1).norm(dim=1) for name in start)
        for label, fit in (("plain", plain), ("decayed", decayed))
    }
    assert (distance["decayed"] < distance["plain"]).all()
    for name, value in decayed.items():
        torch.testing.assert_close(value[2], alone[name][0], rtol=1e-5, atol=1e-6)
    assert FitSettings.from_encoding({"weight_decay": 0.5}).weight_decay == 0.5
    assert FitSettings.from_encoding({}).weight_decay == 0.0  # data sets encoded before the setting existed
    with pytest.raises(ValueError, match="weight_decay must be >= 0"):
        FitSettings(weight_decay=-1.0)


@pytest.mark.parametrize("name", REPRESENTATIONS)
def test_the_device_path_keeps_every_tensor_on_the_representations_device(name: str, base_field, glyphs) -> None:
    """The GPU path, checked for shapes and dtypes on a CPU machine: on the meta device every op must find all its
    tensors there (a model tensor or a coordinate left on the CPU fails), and no values are computed."""
    coords, targets = glyphs
    representation = make_representation(name, base_field, rank=4).to("meta")
    assert representation.device.type == "meta"
    start = {key: value.expand(5, *value.shape) for key, value in representation.initial_factors().items()}
    values = representation.forward(start, coords.expand(5, -1, -1))  # factors and coordinates given on the CPU
    assert (values.device.type, values.shape, values.dtype) == ("meta", targets.shape, torch.float32)
    leaves = {key: value.to("meta").clone().requires_grad_(True) for key, value in start.items()}
    losses = representation.loss_backward(leaves, coords.expand(5, -1, -1).to("meta"), targets.to("meta"), image_loss)
    assert (losses.device.type, losses.shape) == ("meta", (5,))
    assert all(value.grad.device.type == "meta" and value.grad.shape == value.shape for value in leaves.values())
    # a whole fit runs its steps on the device; only handing the fitted values back to the CPU needs data
    with pytest.raises(NotImplementedError, match="meta tensor"):
        fit_instances(representation, coords, targets, FitSettings(steps=2, learning_rate=1e-2, points_per_step=50))
