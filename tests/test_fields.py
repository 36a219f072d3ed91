"""Tests of hf_wlora.fields: the stage-1 neural field, baking, save/load, vmap, rendering and meshing.

Synthetic tensors and analytic SDFs only (no dependency on hf_wlora.data). Small configs keep the file fast.
"""

from __future__ import annotations

import copy
import math
import re
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
import trimesh
from scipy.spatial import cKDTree
from torch import nn
from torch.func import functional_call, vmap

import hf_wlora.fields.registration  # registers model_type="neural_field" with the Auto classes
from hf_wlora.fields import (
    ADAPTER_TARGET_REGEX,
    NeuralFieldConfig,
    NeuralFieldModel,
    NeuralFieldOutput,
    extract_meshes,
    image_coordinates,
    render_images,
    sdf_grid,
    to_pil,
    volume_coordinates,
)
from hf_wlora.fields.layers import FourierFeatures, activate, apply_output_activation, residual_update, sigmoid
from hf_wlora.fields.mesh_rendering import DISPLAY_ROTATION

SMALL = {"hidden_size": 32, "num_layers": 3, "num_fourier_features": 16, "latent_dim": 8, "mapping_layers": 2}
SPHERE_RADIUS = 0.5
# Chamfer bound (mean squared NN distance, summed over both directions) for 10k samples at resolution 64. Two
# independent 10k-point samples of the exact sphere already score ~2.0e-4 (sampling floor); the extracted mesh
# measures the same ~2.0e-4, so 3e-4 leaves room for sampling noise while a half-cell shift (~3.7e-4) fails.
CHAMFER_BOUND = 3e-4


def small_model(modality: str, **overrides: object) -> NeuralFieldModel:
    return NeuralFieldModel(NeuralFieldConfig(modality=modality, **{**SMALL, **overrides}))


@torch.no_grad()
def perturb_(model: nn.Module, scale: float = 0.5) -> nn.Module:
    """Scale and shift every parameter randomly so nothing is at its init (biases 0, styles 1, ...)."""
    for param in model.parameters():
        param.mul_(1 + scale * torch.randn_like(param)).add_(0.1 * torch.randn_like(param))
    return model


def random_coords(n: int, dim: int, *lead: int) -> torch.Tensor:
    return torch.rand(*lead, n, dim) * 2 - 1


def sphere_sdf(coords: torch.Tensor) -> torch.Tensor:
    return coords.norm(dim=-1, keepdim=True) - SPHERE_RADIUS


# --------------------------------------------------------------------------------------------------- config


def test_modality_sets_dimensions() -> None:
    image, shape = NeuralFieldConfig(modality="image"), NeuralFieldConfig(modality="shape")
    assert (image.coord_dim, image.out_dim, image.output_activation) == (2, 3, "sigmoid")
    assert (shape.coord_dim, shape.out_dim, shape.output_activation) == (3, 1, "none")
    custom = NeuralFieldConfig(modality=None, coord_dim=4, out_dim=2)
    assert (custom.coord_dim, custom.out_dim) == (4, 2)
    preset = NeuralFieldConfig.paper_preset("image")
    assert preset.hidden_size > NeuralFieldConfig().hidden_size and preset.num_layers > NeuralFieldConfig().num_layers


@pytest.mark.parametrize(
    "kwargs",
    [
        {"hidden_size": 0},
        {"hidden_size": -8},
        {"hidden_size": 12.5},
        {"num_layers": -1},
        {"latent_dim": 0},
        {"num_fourier_features": 0},
        {"fourier_scale": 0.0},
        {"modality": "audio"},
        {"modality": "image", "coord_dim": 3},
        {"modality": "shape", "out_dim": 3},
        {"modality": None, "coord_dim": 2},
        {"fourier_type": "random"},
        {"fourier_type": "log_linear", "num_fourier_features": 15},
        {"activation": "tanh"},
        {"output_activation": "softmax"},
    ],
)
def test_invalid_config_raises_value_error(kwargs: dict) -> None:
    with pytest.raises(ValueError):
        NeuralFieldConfig(**kwargs)


def test_invalid_paper_preset_and_edited_config() -> None:
    with pytest.raises(ValueError):
        NeuralFieldConfig.paper_preset("audio")
    config = NeuralFieldConfig(**SMALL)
    config.hidden_size = 0  # edited after construction: the model re-checks
    with pytest.raises(ValueError):
        NeuralFieldModel(config)


# -------------------------------------------------------------------------------------------------- forward


@pytest.mark.parametrize(("modality", "coord_dim", "out_dim"), [("image", 2, 3), ("shape", 3, 1)])
def test_forward_shapes(modality: str, coord_dim: int, out_dim: int) -> None:
    model = small_model(modality)
    latents = torch.randn(4, SMALL["latent_dim"])
    out = model(random_coords(50, coord_dim))
    assert isinstance(out, NeuralFieldOutput) and out.values.shape == (50, out_dim)
    assert model(random_coords(50, coord_dim, 4), latents=latents).values.shape == (4, 50, out_dim)
    # shared coords broadcast against N latents
    assert model(random_coords(50, coord_dim), latents=latents).values.shape == (4, 50, out_dim)
    assert model(random_coords(50, coord_dim, 2, 4), latents=latents).values.shape == (2, 4, 50, out_dim)
    (values,) = model(random_coords(50, coord_dim), return_dict=False)
    assert values.shape == (50, out_dim)
    baked = model.bake()
    assert baked(random_coords(50, coord_dim, 3)).values.shape == (3, 50, out_dim)
    with pytest.raises(ValueError, match="coords"):
        model(random_coords(50, coord_dim + 1))
    with pytest.raises(ValueError, match="latent"):
        model(random_coords(50, coord_dim), latents=torch.randn(4, SMALL["latent_dim"] + 1))


def test_forward_semantics() -> None:
    model = perturb_(small_model("image"))
    coords = random_coords(64, 2)
    values = model(coords).values
    assert values.min() >= 0 and values.max() <= 1  # sigmoid
    # latents=None is the mean latent z = 0, and each instance's latent drives only its own values
    torch.testing.assert_close(values, model(coords, latents=torch.zeros(SMALL["latent_dim"])).values)
    latents = torch.randn(3, SMALL["latent_dim"])
    batched = model(coords, latents=latents).values
    for i in range(3):
        torch.testing.assert_close(batched[i], model(coords, latents=latents[i]).values)
    assert not torch.allclose(batched[0], batched[1])
    # log-linear features and a clamp head work too
    other = small_model("image", fourier_type="log_linear", output_activation="clamp")
    assert other(coords).values.shape == (64, 3)


@pytest.mark.parametrize("activation", [None, "leaky_relu", "relu", "silu", "gelu"])
def test_residual_update_is_the_composed_form_at_every_position(activation: str | None) -> None:
    # three identical instances of 1,003 x 7 values: every vector kernel leaves a scalar tail in the last one
    h = torch.randn(1, 1003, 7).expand(3, -1, -1).clone().requires_grad_(True)
    z = torch.randn(1, 1003, 7).expand(3, -1, -1).clone().requires_grad_(True)
    out = residual_update(h, z, activation)
    assert torch.equal(out, (h + activate(z, activation)) * math.sqrt(0.5))
    assert torch.equal(out[0], out[2])
    out.pow(2).sum().backward()  # relu saves its output: the in-place steps must leave it alone
    assert torch.equal(z.grad[0], z.grad[2]) and torch.equal(h.grad[0], h.grad[2])


@pytest.mark.parametrize("activation", ["sigmoid", "silu"])
def test_sigmoid_rounds_every_element_alike_wherever_it_lies(activation: str) -> None:
    # torch.sigmoid and F.silu compute their vectorised loop's scalar tail with another exp: of three identical rows
    # of 301 values, the last differed from the others in about one draw in eight on the project's CPU
    generator = torch.Generator().manual_seed(0)
    for _ in range(50):
        x = (3 * torch.randn(1, 301, generator=generator)).repeat(3, 1).requires_grad_(True)
        y = apply_output_activation(x, "sigmoid") if activation == "sigmoid" else activate(x, "silu")
        y.backward(torch.randn(1, 301, generator=generator).repeat(3, 1))
        for values in (y, x.grad):
            assert torch.equal(values[0], values[1]) and torch.equal(values[0], values[2])
        expected = torch.sigmoid(x) if activation == "sigmoid" else F.silu(x) * 1.6766
        torch.testing.assert_close(y, expected, rtol=1e-6, atol=1e-7)
    saturated = torch.tensor([-1000.0, -100.0, 0.0, 100.0, 1000.0], requires_grad=True)
    apply_output_activation(saturated, "sigmoid").sum().backward()  # exp(-x) overflows: the gradient stays finite
    assert torch.equal(saturated.grad, torch.tensor([0.0, 0.0, 0.25, 0.0, 0.0]))


def test_the_sigmoid_keeps_torch_sigmoids_derivatives_dtypes_and_accuracy() -> None:
    x = torch.randn(6, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(sigmoid, (x,), check_forward_ad=True)
    assert torch.autograd.gradgradcheck(sigmoid, (x,))
    point = torch.tensor([0.5, -1.0])  # forward mode too: jacfwd and hessian
    torch.testing.assert_close(
        torch.func.hessian(lambda t: sigmoid(t).sum())(point),
        torch.func.hessian(lambda t: torch.sigmoid(t).sum())(point),
    )
    torch.testing.assert_close(sigmoid(torch.tensor([0, 1, 2], dtype=torch.uint8)), torch.sigmoid(torch.arange(3.0)))
    grid = torch.linspace(-20, 20, 20001)
    for dtype in (torch.float16, torch.bfloat16):  # computed in float32 and rounded once: exp(-x) overflows float16
        assert torch.equal(sigmoid(grid.to(dtype)), torch.sigmoid(grid.to(dtype)))


def test_fourier_features_of_one_grid_for_every_instance_are_encoded_once() -> None:
    encoding = FourierFeatures(coord_dim=2, num_features=16, seed=3)
    grid = torch.rand(1, 50, 2) * 2 - 1
    shared = grid.expand(4, -1, -1)  # how the batched fit passes one pixel grid to N instances
    features = encoding(shared)
    assert features.shape == (4, 50, encoding.out_dim) and features.stride(0) == 0  # one copy, still expanded
    assert torch.equal(features, encoding(shared.clone()))  # bit-identical to encoding every copy
    copies = shared.clone()
    copies[2] += 0.1  # real per-instance coordinates are encoded one by one
    assert not torch.equal(encoding(copies)[2], features[2])
    # gradients with respect to the coordinates stay per instance: each copy gets its own, equal, gradient
    wanted = grid.clone().requires_grad_(True).expand(4, -1, -1)
    (gradient,) = torch.autograd.grad(encoding(wanted).sum(), wanted)
    assert torch.equal(gradient[0], gradient[3]) and gradient[0].abs().sum() > 0


# ----------------------------------------------------------------------------------------------------- bake


@pytest.mark.parametrize("modality", ["image", "shape"])
@pytest.mark.parametrize("variant", [{}, {"demodulate": False, "residual": False, "mapping_layers": 0}])
def test_bake_matches_modulated_at_mean_latent(modality: str, variant: dict) -> None:
    torch.manual_seed(1)
    model = perturb_(small_model(modality, **variant))
    coords = random_coords(512, model.config.coord_dim)
    rng_state = torch.get_rng_state()
    baked = model.bake()
    assert torch.equal(torch.get_rng_state(), rng_state)  # baking does not disturb training's random stream
    assert baked is not model and baked.config.baked and not model.config.baked
    assert not hasattr(baked, "mapping")
    expected = model(coords).values
    got = baked(coords).values
    assert (got - expected).abs().max() <= 1e-5 * expected.abs().max()
    # baked fields have no latent: latents are ignored
    torch.testing.assert_close(baked(coords, latents=torch.randn(SMALL["latent_dim"])).values, got)
    # in float64 the folding is exact up to float64 rounding
    model64 = copy.deepcopy(model).double()
    coords64 = coords.double()
    torch.testing.assert_close(model64.bake()(coords64).values, model64(coords64).values, rtol=1e-10, atol=1e-12)


def test_baked_layers_are_plain_linear_with_stable_names() -> None:
    model = small_model("image")
    baked = model.bake()
    modules = dict(baked.named_modules())
    names = baked.adapter_target_modules()
    assert names == ["input_proj.linear", "trunk.0.linear", "trunk.1.linear", "trunk.2.linear"]
    assert names == model.adapter_target_modules()
    for name in [*names, "head.linear"]:
        assert type(modules[name]) is nn.Linear
    linear_names = [name for name, module in baked.named_modules() if isinstance(module, nn.Linear)]
    assert linear_names == baked.linear_layer_names()
    assert [name for name in linear_names if re.fullmatch(ADAPTER_TARGET_REGEX, name)] == names
    assert re.fullmatch(ADAPTER_TARGET_REGEX, "base_model.model.trunk.2.linear")
    # baking a baked model copies it
    again = baked.bake()
    coords = random_coords(16, 2)
    torch.testing.assert_close(again(coords).values, baked(coords).values)


@pytest.mark.filterwarnings("ignore::FutureWarning")  # peft calls a deprecated transformers helper
def test_peft_lora_targets_the_advertised_layers() -> None:
    peft = pytest.importorskip("peft")
    baked = perturb_(small_model("image")).bake()
    coords = random_coords(20, 2)
    expected = baked(coords).values
    for targets in (baked.adapter_target_modules(), ADAPTER_TARGET_REGEX):
        model = peft.get_peft_model(copy.deepcopy(baked), peft.LoraConfig(r=2, target_modules=targets))
        adapted = sorted(name for name, _ in model.named_modules() if name.endswith(".lora_A"))
        assert adapted == sorted(f"base_model.model.{name}.lora_A" for name in baked.adapter_target_modules())
        torch.testing.assert_close(model(coords).values, expected)  # LoRA's B = 0 at init


# ------------------------------------------------------------------------------------------------ save/load


@pytest.mark.parametrize("modality", ["image", "shape"])
def test_save_load_round_trip(tmp_path, modality: str) -> None:
    from safetensors import safe_open
    from transformers import AutoConfig, AutoModel

    model = perturb_(small_model(modality, fourier_seed=3))
    coords = random_coords(100, model.config.coord_dim)
    latents = torch.randn(2, SMALL["latent_dim"])
    for name, field in [("modulated", model), ("baked", model.bake())]:
        folder = tmp_path / name
        field.save_pretrained(folder)
        assert (folder / "model.safetensors").exists()
        with safe_open(folder / "model.safetensors", framework="pt") as handle:
            saved = list(handle.keys())
        assert "encoding.frequencies" in saved
        config = AutoConfig.from_pretrained(folder)
        assert isinstance(config, NeuralFieldConfig) and config.baked == (name == "baked")
        kwargs = {} if name == "baked" else {"latents": latents}
        expected = field(coords, **kwargs).values
        for loaded in (NeuralFieldModel.from_pretrained(folder), AutoModel.from_pretrained(folder)):
            assert type(loaded) is NeuralFieldModel
            assert torch.equal(loaded.encoding.frequencies, field.encoding.frequencies)
            assert torch.equal(loaded(coords, **kwargs).values, expected)


def test_registration_is_idempotent() -> None:
    from transformers import AutoConfig

    hf_wlora.fields.registration.register()
    hf_wlora.fields.registration.register()
    assert type(AutoConfig.for_model("neural_field")) is NeuralFieldConfig


# ------------------------------------------------------------------------------------------------------ vmap


@pytest.mark.parametrize("modality", ["image", "shape"])
def test_baked_model_is_vmap_compatible(modality: str) -> None:
    baked = perturb_(small_model(modality)).bake()
    params = dict(baked.named_parameters())
    n = 4
    stacked = {
        name: torch.stack([p.detach() * (1 + 0.1 * torch.randn_like(p)) for _ in range(n)])
        for name, p in params.items()
    }
    coords = random_coords(40, baked.config.coord_dim, n)

    def run(p: dict[str, torch.Tensor], x: torch.Tensor) -> torch.Tensor:
        return functional_call(baked, p, (x,)).values

    loop = torch.stack([run({k: v[i] for k, v in stacked.items()}, coords[i]) for i in range(n)])
    torch.testing.assert_close(vmap(run, in_dims=(0, 0))(stacked, coords), loop)
    shared = vmap(run, in_dims=(0, None))(stacked, coords[0])
    torch.testing.assert_close(
        shared, torch.stack([run({k: v[i] for k, v in stacked.items()}, coords[0]) for i in range(n)])
    )
    # gradients flow through the functional form (what per-instance fitting needs)
    grads = torch.func.grad(lambda p: run(p, coords[0]).square().mean())(params)
    assert set(grads) == set(params)


# -------------------------------------------------------------------------------------------------- decoding


def test_image_coordinates_are_pixel_centres() -> None:
    coords = image_coordinates(2, 4)
    expected = torch.tensor([[x, y] for y in (-0.5, 0.5) for x in (-0.75, -0.25, 0.25, 0.75)])
    torch.testing.assert_close(coords, expected)
    grid = volume_coordinates(3, bound=2.0)
    assert grid.shape == (27, 3)
    torch.testing.assert_close(grid[1], torch.tensor([-2.0, -2.0, 0.0]))  # last axis fastest ('ij')
    torch.testing.assert_close(grid[9], torch.tensor([0.0, -2.0, -2.0]))


def test_render_images_shapes_range_and_convention() -> None:
    model = perturb_(small_model("image"))
    latents = torch.randn(3, SMALL["latent_dim"])
    for resolution, (h, w) in [(8, (8, 8)), ((13, 17), (13, 17))]:
        images = render_images(model, resolution, latents=latents, batch_size=2, chunk=50)
        assert images.shape == (3, h, w, 3) and images.dtype == torch.float32
        assert images.min() >= 0 and images.max() <= 1
        direct = model(image_coordinates(h, w), latents=latents).values.reshape(3, h, w, 3)
        torch.testing.assert_close(images, direct)
    assert render_images(model, 8).shape == (1, 8, 8, 3)
    assert render_images(model.bake(), 8).shape == (1, 8, 8, 3)
    with pytest.raises(ValueError, match="baked"):
        render_images(model.bake(), 8, latents=latents)

    # a field function: red = x, green = y in [0, 1]; pixel (i, j) is at x = (2j+1)/W - 1, y = (2i+1)/H - 1
    def ramp(coords: torch.Tensor) -> torch.Tensor:
        return torch.cat([(coords + 1) / 2, torch.zeros_like(coords[:, :1])], dim=-1)

    image = render_images(ramp, (4, 8))[0]
    torch.testing.assert_close(image[0, :, 0], (torch.arange(8) + 0.5) / 8)
    torch.testing.assert_close(image[:, 0, 1], (torch.arange(4) + 0.5) / 4)
    pils = to_pil(render_images(model, (5, 7), latents=latents))
    assert len(pils) == 3 and pils[0].size == (7, 5) and pils[0].mode == "RGB"
    assert to_pil(torch.rand(4, 6, 1))[0].mode == "L"


def test_sdf_grid_with_model_and_chunks() -> None:
    model = perturb_(small_model("shape"))
    latents = torch.randn(2, SMALL["latent_dim"])
    grids = sdf_grid(model, 9, latents=latents, chunk=100, batch_size=1)
    assert grids.shape == (2, 9, 9, 9)
    torch.testing.assert_close(grids, sdf_grid(model, 9, latents=latents))
    direct = model(volume_coordinates(9), latents=latents).values.reshape(2, 9, 9, 9)
    torch.testing.assert_close(grids, direct)
    assert sdf_grid(model.bake(), 5, bound=0.5).shape == (1, 5, 5, 5)


def chamfer(a: np.ndarray, b: np.ndarray) -> float:
    """Mean squared nearest-neighbour distance a->b plus b->a (the paper's protocol)."""
    return float((cKDTree(b).query(a)[0] ** 2).mean() + (cKDTree(a).query(b)[0] ** 2).mean())


def test_mesh_pictures_rotate_the_field_so_its_y_is_up_and_never_mirror_it() -> None:
    rotation = DISPLAY_ROTATION
    np.testing.assert_allclose(rotation @ rotation.T, np.eye(3), atol=0)  # orthogonal ...
    assert np.linalg.det(rotation) == 1.0  # ... and a rotation: a shape and its mirror image are drawn differently
    assert (rotation @ np.array([0.0, 1.0, 0.0])).tolist() == [0.0, 0.0, 1.0]  # the field's y is matplotlib's up
    assert (rotation @ np.array([1.0, 0.0, 0.0])).tolist() == [1.0, 0.0, 0.0]


def test_sphere_mesh_is_close_to_truth() -> None:
    resolution, bound = 64, 1.0
    grids = sdf_grid(sphere_sdf, resolution, bound=bound, chunk=40_000)
    assert grids.shape == (1, resolution, resolution, resolution)
    meshes = extract_meshes(grids, level=0.0, bound=bound)
    assert len(meshes) == 1 and not meshes.failures
    mesh = meshes[0]
    assert isinstance(mesh, trimesh.Trimesh) and mesh.is_watertight
    assert mesh.volume > 0  # outward winding
    assert mesh.volume == pytest.approx(4 / 3 * math.pi * SPHERE_RADIUS**3, rel=0.01)
    # vertices lie on the sphere to within a small fraction of a cell (2 / 63)
    radii = np.linalg.norm(mesh.vertices, axis=1)
    assert np.abs(radii - SPHERE_RADIUS).max() < 2e-3
    samples, _ = trimesh.sample.sample_surface(mesh, 10_000, seed=0)
    truth = np.random.default_rng(0).normal(size=(10_000, 3))
    truth = SPHERE_RADIUS * truth / np.linalg.norm(truth, axis=1, keepdims=True)
    assert chamfer(samples, truth) < CHAMFER_BOUND
    # the same sphere on a smaller box (different bound) still maps back to world coordinates
    small = extract_meshes(sdf_grid(sphere_sdf, 32, bound=0.75), bound=0.75)[0]
    assert np.abs(np.linalg.norm(small.vertices, axis=1) - SPHERE_RADIUS).max() < 5e-3


def test_degenerate_grids_raise_or_report() -> None:
    good = sdf_grid(sphere_sdf, 16)[0]
    positive = torch.ones(16, 16, 16)
    nan = good.clone()
    nan[3, 4, 5] = float("nan")
    grids = torch.stack([good, positive, -positive, nan])
    with pytest.raises(ValueError, match=r"instance 1: .*above"):
        extract_meshes(grids)
    with pytest.raises(ValueError, match=r"instance 0: .*below"):
        extract_meshes(-positive[None])
    with pytest.raises(ValueError, match=r"instance 0: .*NaN"):
        extract_meshes(nan[None])
    result = extract_meshes(grids, allow_failures=True)
    assert isinstance(result[0], trimesh.Trimesh)
    assert result[1:] == [None, None, None]
    assert sorted(result.failures) == [1, 2, 3] and "NaN" in result.failures[3]
    with pytest.raises(ValueError):
        extract_meshes(torch.ones(4, 4))


def test_a_weights_file_missing_a_tensor_does_not_load(tmp_path: Path) -> None:
    """transformers would initialise the missing layer afresh and only log it: a random base field, silently."""
    from safetensors.torch import load_file, save_file
    from transformers import AutoModel

    NeuralFieldModel(NeuralFieldConfig(modality="image", hidden_size=16, num_layers=2)).bake().save_pretrained(tmp_path)
    state = load_file(tmp_path / "model.safetensors")
    del state["trunk.0.linear.bias"]
    save_file(state, tmp_path / "model.safetensors", metadata={"format": "pt"})
    for loader in (NeuralFieldModel.from_pretrained, AutoModel.from_pretrained):
        with pytest.raises(ValueError, match=r"does not hold the weights its config needs: missing keys \['trunk\.0"):
            loader(tmp_path)
