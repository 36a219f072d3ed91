"""The representation package's own API: targets of any data form, fitting in batches, the fit a data set's
encoding ran, reconstruction scores, PEFT conversion, the base-field loader, and the shared checks."""

from __future__ import annotations

import logging
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import torch
import trimesh
from peft import PeftModel
from PIL import Image

from hf_wlora.checks import check_int, is_int
from hf_wlora.data import GlyphImages, ProceduralShapes, sample_surface
from hf_wlora.fields import (
    NeuralFieldConfig,
    NeuralFieldModel,
    extract_meshes,
    image_coordinates,
    render_images,
    sdf_grid,
)
from hf_wlora.metrics import psnr, psnr_from_mse, surface_chamfer
from hf_wlora.representations import (
    FitSettings,
    data_targets,
    fit_in_batches,
    fit_instances,
    instance_targets,
    kinds,
    load_base_field,
    make_representation,
    peft_model_from_factors,
    peft_model_to_row,
    reconstruction_scores,
)

RESOLUTION = 8


@pytest.fixture(scope="module")
def image_field() -> NeuralFieldModel:
    torch.manual_seed(0)
    return NeuralFieldModel(NeuralFieldConfig(modality="image", hidden_size=16, num_layers=2)).bake()


def test_data_targets_accept_every_image_form_alike() -> None:
    glyphs = GlyphImages(num_instances=2, resolution=RESOLUTION, seed=0)
    instances = [glyphs[0], glyphs[1]]
    coords, targets = data_targets(instances, "image")
    assert torch.equal(coords, image_coordinates(RESOLUTION, RESOLUTION)) and targets.shape == (2, RESOLUTION**2, 3)
    as_array = np.stack([instance.image for instance in instances])
    assert torch.equal(data_targets(as_array, "image")[1], targets)
    assert torch.equal(data_targets(torch.as_tensor(as_array[0]), "image")[1], targets[:1])  # one (H, W, 3) image
    pictures = [Image.fromarray((image * 255).round().astype(np.uint8)) for image in as_array]
    torch.testing.assert_close(data_targets(pictures, "image")[1], targets, atol=0.5 / 255, rtol=0)
    assert torch.equal(instance_targets(instances, "image", 0, [0, 1])[1], targets)
    with pytest.raises(ValueError, match=r"must be \(N, H, W, 3\) RGB"):
        data_targets(torch.rand(2, RESOLUTION, RESOLUTION), "image")
    with pytest.raises(ValueError, match="share one size"):
        data_targets([pictures[0], pictures[1].resize((4, 4))], "image")
    small = SimpleNamespace(image=as_array[1][:4, :4], label=0)  # a data source's instances of two sizes
    with pytest.raises(ValueError, match=r"share one size, got \[\(4, 4, 3\), \(8, 8, 3\)\]; pass data_options"):
        instance_targets([instances[0], small], "image", 0, [0, 1])


def test_data_targets_of_shapes_draw_seeded_samples() -> None:
    shapes = ProceduralShapes(num_instances=2, seed=0)
    coords, values = data_targets([shapes[0], shapes[1]], "shape", points_per_shape=64)
    assert coords.shape == (2, 64, 3) and values.shape == (2, 64, 1)
    again = instance_targets([shapes[0], shapes[1]], "shape", 64, [0, 1])  # seeded by position, as the encoder does
    assert torch.equal(coords, again[0]) and torch.equal(values, again[1])
    with pytest.raises(ValueError, match="shape instances"):
        data_targets([], "shape")


def test_fit_in_batches_equals_one_fit_and_checks_the_batch_size(image_field: NeuralFieldModel) -> None:
    representation = make_representation("mlora_asym", image_field, rank=2)
    coords, targets = data_targets(
        torch.rand(5, RESOLUTION, RESOLUTION, 3, generator=torch.Generator().manual_seed(0)), "image"
    )
    settings = FitSettings(steps=12, learning_rate=1e-1, points_per_step=32)
    whole = fit_instances(representation, coords, targets, settings).factors
    in_batches = fit_in_batches(representation, coords, targets, settings, batch_size=2)
    for name, value in whole.items():
        torch.testing.assert_close(in_batches[name], value, rtol=1e-5, atol=1e-6)
    with pytest.raises(ValueError, match="batch_size must be a positive integer, got True"):
        fit_in_batches(representation, coords, targets, settings, batch_size=True)


def test_fit_settings_repeat_an_encoding_with_overrides() -> None:
    encoding = {"steps": 40, "learning_rate": 0.1, "points_per_step": 256, "seed": 3, "rank": 4}
    assert FitSettings.from_encoding(encoding) == FitSettings(40, 0.1, 256, None, 3)
    assert FitSettings.from_encoding(encoding, steps=5, learning_rate=None) == FitSettings(5, 0.1, 256, None, 3)
    assert FitSettings.from_encoding({}) == FitSettings()
    with pytest.raises(
        ValueError, match=r"Only steps, learning_rate and points_per_step can be overridden, got \['seed'\]"
    ):
        FitSettings.from_encoding(encoding, seed=1)


def test_image_scores_are_the_psnr_of_the_decoded_images(image_field: NeuralFieldModel) -> None:
    representation = make_representation("mlora", image_field, rank=2)
    glyphs = GlyphImages(num_instances=2, resolution=RESOLUTION, seed=1)
    instances = [glyphs[0], glyphs[1]]
    coords, targets = instance_targets(instances, "image", 0, [0, 1])
    factors = fit_instances(representation, coords, targets, FitSettings(steps=5, learning_rate=1e-1)).factors
    scores = reconstruction_scores(representation, factors, instances, coords, targets)
    decoded = render_images(representation.field_function(factors), RESOLUTION)
    np.testing.assert_allclose(scores, psnr(decoded.reshape(2, -1, 3), targets).numpy(), rtol=1e-6)


def test_shape_scores_are_nan_without_a_mesh(caplog: pytest.LogCaptureFixture) -> None:
    torch.manual_seed(0)
    field = NeuralFieldModel(NeuralFieldConfig(modality="shape", hidden_size=16, num_layers=2)).bake()
    with torch.no_grad():  # positive everywhere: no surface
        field.head.linear.weight.zero_()
        field.head.linear.bias.fill_(0.5)
    representation = make_representation("mlora_asym", field, rank=2)
    shapes = ProceduralShapes(num_instances=2, seed=0)
    factors = {name: value.expand(2, *value.shape) for name, value in representation.initial_factors().items()}
    coords, targets = instance_targets([shapes[0], shapes[1]], "shape", 32, [0, 1])
    with caplog.at_level(logging.WARNING):
        scores = reconstruction_scores(representation, factors, [shapes[0], shapes[1]], coords, targets, 12)
    assert np.isnan(scores).all()


def test_shape_scores_take_the_surface_points_asked_for() -> None:
    torch.manual_seed(0)
    field = NeuralFieldModel(NeuralFieldConfig(modality="shape", hidden_size=16, num_layers=2)).bake()
    representation = make_representation("mlora_asym", field, rank=2)
    shapes = ProceduralShapes(num_instances=2, seed=0)
    instances = [shapes[0], shapes[1]]
    factors = {name: value.expand(2, *value.shape) for name, value in representation.initial_factors().items()}
    coords, targets = instance_targets(instances, "shape", 32, [0, 1])

    def scores(points: int, seed: int) -> np.ndarray:
        return reconstruction_scores(representation, factors, instances, coords, targets, 12, seed, points)

    meshes = extract_meshes(sdf_grid(representation.field_function(factors), 12))
    by_hand = surface_chamfer(meshes, [sample_surface(shape, 300, seed=3) for shape in instances], seed=3)
    np.testing.assert_array_equal(scores(300, seed=3), by_hand)
    # a larger sample scatters less from one seed to the next (about as 1 / sqrt(points))
    few, many = (np.array([scores(points, seed) for seed in range(6)]) for points in (256, 4096))
    assert np.isfinite(few).all() and (many.std(axis=0) < 0.5 * few.std(axis=0)).all()
    with pytest.raises(ValueError, match="surface_points must be"):
        scores(0, seed=0)


def test_surface_chamfer_of_a_known_mesh() -> None:
    cube = trimesh.creation.box(extents=(1.0, 1.0, 1.0))
    reference = np.asarray(trimesh.sample.sample_surface(cube, 500, seed=7)[0])
    scores = surface_chamfer([cube, None], [reference, reference], seed=7)
    assert scores[0] == 0.0 and np.isnan(scores[1])  # the same seed samples the same points; no mesh scores NaN
    sphere = trimesh.creation.icosphere(subdivisions=4, radius=1.0)
    on_sphere = np.asarray(trimesh.sample.sample_surface(sphere, 2000, seed=1)[0])
    larger = surface_chamfer([sphere.copy().apply_scale(1.1)], [on_sphere], seed=1)[0]
    # the same seed draws the same points, scaled: each point's twin is 0.1 away, in both directions
    assert larger == pytest.approx(2 * 0.1**2, rel=0.05)
    with pytest.raises(ValueError, match="Got 1 meshes for 2 reference point clouds"):
        surface_chamfer([cube], [reference, reference])


def test_psnr_from_mse_matches_psnr() -> None:
    assert float(psnr_from_mse(0.01)) == pytest.approx(20.0)
    assert float(psnr_from_mse(0.25, data_range=2.0)) == pytest.approx(10 * np.log10(16.0))
    assert torch.isinf(psnr_from_mse(torch.tensor([0.0]))).all()
    prediction, target = torch.rand(3, 10), torch.rand(3, 10)
    torch.testing.assert_close(psnr(prediction, target), psnr_from_mse((prediction - target).pow(2).mean(dim=1)))


def test_a_row_of_factors_becomes_a_peft_model(image_field: NeuralFieldModel, tmp_path: Path) -> None:
    representation = make_representation("lora_asym", image_field, rank=2)
    start = representation.initial_factors()
    masks = representation.spec.masks()  # the frozen entries keep the mask's values, as in every real row
    factors = {
        name: torch.where(
            masks.get(name, torch.zeros_like(value, dtype=torch.bool)), value, value + 0.1 * torch.randn_like(value)
        )
        for name, value in start.items()
    }
    model = peft_model_from_factors(representation.spec, image_field, factors)
    assert isinstance(model, PeftModel) and "mlora_A" not in dict(image_field.named_parameters())  # field untouched
    assert all(torch.equal(peft_model_to_row(model)[name], factors[name]) for name in factors)
    coords = image_coordinates(RESOLUTION, RESOLUTION)
    expected = representation.forward({name: value[None] for name, value in factors.items()}, coords[None])[0]
    torch.testing.assert_close(model(coords).values, expected, rtol=1e-5, atol=1e-6)
    with pytest.raises(ValueError, match="do not match the spec"):
        peft_model_from_factors(representation.spec, image_field, {"trunk.0.linear.A": start["trunk.0.linear.A"]})
    wrong = {**factors, "trunk.0.linear.A": torch.zeros(3, 3)}
    with pytest.raises(ValueError, match=r"Factor 'trunk.0.linear.A' has shape \(3, 3\)"):
        peft_model_from_factors(representation.spec, image_field, wrong)


def test_load_base_field_bakes_a_modulated_field(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    torch.manual_seed(0)
    modulated = NeuralFieldModel(NeuralFieldConfig(modality="image", hidden_size=16, num_layers=2))
    modulated.save_pretrained(tmp_path / "modulated")
    with caplog.at_level(logging.WARNING):
        field = load_base_field(str(tmp_path / "modulated"))
    assert "baking its mean latent" in caplog.text
    assert field.config.baked and not any(parameter.requires_grad for parameter in field.parameters())
    coords = image_coordinates(RESOLUTION, RESOLUTION)
    torch.testing.assert_close(field(coords).values, modulated.bake()(coords).values)


def test_integer_checks_refuse_bools_and_name_the_argument() -> None:
    assert is_int(3) and not is_int(True) and not is_int(3.0)
    assert check_int(0, "seed", minimum=0) == 0
    for value, minimum, message in [
        (True, 1, "steps must be a positive integer, got True."),
        (-1, 0, "steps must be a non-negative integer, got -1."),
        (1, 2, "steps must be an integer >= 2, got 1."),
        ("3", None, "steps must be an integer, got '3'."),
    ]:
        with pytest.raises(ValueError, match=message.replace("(", r"\(")):
            check_int(value, "steps", minimum)


@pytest.mark.parametrize("name", ["mlora", "mlora_asym", "lora", "lora_asym", "mlp"])
def test_the_init_distribution_is_the_law_the_start_was_drawn_from(name: str) -> None:
    torch.manual_seed(0)
    field = NeuralFieldModel(NeuralFieldConfig(modality="image", hidden_size=64, num_layers=3)).bake()
    representation = make_representation(name, field, rank=8)
    start, laws = representation.initial_factors(), representation.init_distribution()
    masks = representation.spec.masks()
    assert laws.keys() == start.keys()
    for factor, value in start.items():
        mean, std = laws[factor]
        assert mean.shape == std.shape == value.shape and (std >= 0).all(), factor
        drawn = ~masks[factor] if factor in masks else torch.ones_like(value, dtype=torch.bool)
        fixed = drawn & (std == 0)
        assert torch.equal(value[fixed], mean[fixed]), factor  # not random (additive LoRA's B = 0): the mean itself
        xi = ((value - mean) / std)[drawn & (std > 0)]
        if xi.numel() >= 500:  # the random part of every drawn entry: zero mean, unit std
            assert abs(float(xi.mean())) < 0.15 and float(xi.std()) == pytest.approx(1.0, abs=0.15), factor


@pytest.mark.parametrize("name", ["mlora_asym", "mlp"])
def test_many_points_are_evaluated_in_pieces_to_the_same_bits(name: str, monkeypatch: pytest.MonkeyPatch) -> None:
    torch.manual_seed(0)
    field = NeuralFieldModel(NeuralFieldConfig(modality="shape", hidden_size=16, num_layers=2)).bake()
    representation = make_representation(name, field, rank=2)
    start = representation.initial_factors()
    factors = {factor: value + 0.05 * torch.randn(3, *value.shape) for factor, value in start.items()}
    coords = torch.rand(3, 1000, 3) * 2 - 1
    whole = representation.forward(factors, coords)  # 512K / 16 wide: one piece of up to 32,768 points
    in_pairs = representation.forward(factors, coords, chunk_size=2)
    grid = sdf_grid(representation.field_function(factors), 12)  # a decoder's shared grid, expanded over instances

    evaluated = []
    batched_values = type(representation)._batched_values

    def spy(self, parameters, piece, chunk_size):
        evaluated.append((piece.shape[1], chunk_size))
        return batched_values(self, parameters, piece, chunk_size)

    monkeypatch.setattr(type(representation), "_batched_values", spy)
    monkeypatch.setattr(kinds, "points_per_chunk", lambda device, width: 64)
    assert torch.equal(representation.forward(factors, coords), whole)
    assert evaluated == [(64, 3)] * 15 + [(40, 3)]  # uneven last piece; all instances per chunk at 64 x 16 wide
    evaluated.clear()
    assert torch.equal(representation.forward(factors, coords, chunk_size=2), in_pairs)
    assert evaluated == [(64, 2)] * 15 + [(40, 2)]  # chunk_size is still instances per chunk
    assert torch.equal(sdf_grid(representation.field_function(factors), 12), grid)
