"""The mLoRA PEFT tuner: init, training, masks, merging, adapters, save/load, the batched path, and bad input."""

from __future__ import annotations

import copy
import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from peft import LoraConfig, PeftConfig, PeftModel, PeftType, get_peft_model
from safetensors.torch import load_file, save_file
from torch import nn

import hf_wlora
from hf_wlora import MLoraConfig, batched_forward, batched_loss_backward, stack_adapter_factors
from hf_wlora.tuners.mlora import MLoraLayer, adapter_factors, chunk_size_for, points_per_chunk

from toy_models import TOY_TARGETS, ToyModel, toy_tokens

MODES = ["multiplicative", "additive"]
TESTS_DIR = Path(__file__).parent


def make_model(mode: str = "multiplicative", asymmetric: bool = True, init_weights: bool = True, **kwargs):
    torch.manual_seed(0)
    # Frozen like the base inside the PEFT model: PyTorch's CPU convolution picks a different kernel when the
    # weight requires grad, which alone changes outputs in the 7th digit.
    base = ToyModel().requires_grad_(False)
    config = MLoraConfig(
        r=4, mode=mode, target_modules=TOY_TARGETS, asymmetric_mask=asymmetric, init_weights=init_weights, **kwargs
    )
    return base, get_peft_model(copy.deepcopy(base), config)


def mlora_layers(model: nn.Module) -> dict[str, MLoraLayer]:
    return {layer.layer_key: layer for layer in model.modules() if isinstance(layer, MLoraLayer)}


# -- registration -----------------------------------------------------------------------------------------------------
def test_registered_as_its_own_peft_type() -> None:
    assert PeftType("MLORA") is PeftType.MLORA
    assert MLoraConfig().peft_type == PeftType.MLORA
    _, model = make_model()
    assert type(model.base_model).__name__ == "MLoraModel"


# -- init -------------------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("asymmetric", [False, True])
def test_multiplicative_default_init_is_an_identity_with_distinct_rank_components(asymmetric: bool) -> None:
    base, model = make_model(asymmetric=asymmetric)
    for layer in mlora_layers(model).values():
        torch.testing.assert_close(layer.factor_product("default"), torch.ones(layer.out_features, layer.in_features))
        A, B = layer.mlora_A["default"].detach(), layer.mlora_B["default"].detach()
        assert torch.equal(B, torch.ones_like(B))  # alpha = 1: B = alpha^-1/2 exactly
        # the rank components still differ (no two rows of A alike), by noise of about init_std
        assert len({tuple(row.tolist()) for row in A}) == len(A)
        trainable = layer._trainable_entries("default")
        noise = A[trainable] / (layer.r["default"] / trainable.sum(dim=0)).expand_as(A)[trainable] - 1
        assert 0.005 < noise.std().item() < 0.015
    tokens = toy_tokens()
    torch.testing.assert_close(model(tokens), base(tokens), rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("asymmetric", [False, True])
def test_gaussian_init_is_the_authors_near_identity(asymmetric: bool) -> None:
    base, model = make_model(asymmetric=asymmetric, init_weights="gaussian")
    for layer in mlora_layers(model).values():
        product = layer.factor_product("default")
        assert 1e-3 < (product - 1).abs().max().item() < 0.06  # M ≈ 1 entry-wise (std 0.01 factors), not exactly
        # each input column, mask-compensated (uncompensated it would be off by >= 1/r)
        assert (product.mean(dim=0) - 1).abs().max().item() < 0.05
        B = layer.mlora_B["default"].detach()
        assert 0.005 < B.std().item() < 0.015  # both factors are N(1, 0.01^2)
    tokens = toy_tokens()
    relative = (model(tokens) - base(tokens)).norm() / base(tokens).norm()
    assert 1e-5 < relative.item() < 0.02


@pytest.mark.parametrize("init_weights", [True, "gaussian"])
def test_init_distribution_describes_the_draw(init_weights: bool | str) -> None:
    draws = []
    for seed in range(40):
        torch.manual_seed(seed)
        model = get_peft_model(
            ToyModel(), MLoraConfig(r=4, target_modules=["fc1"], asymmetric_mask=True, init_weights=init_weights)
        )
        draws.append(model.base_model.model.fc1.mlora_A["default"].detach())
    mean, std = model.base_model.init_distribution()["fc1.A"]
    draws = torch.stack(draws)
    trainable = ~model.base_model.model.fc1.mlora_mask["default"]
    torch.testing.assert_close(draws.mean(dim=0)[trainable], mean[trainable], atol=0.02, rtol=0)
    ratio = draws.std(dim=0)[trainable] / std[trainable]
    assert 0.7 < ratio.mean().item() < 1.3


def test_additive_init_is_exact_identity() -> None:
    for init_weights in (True, "gaussian"):
        base, model = make_model(mode="additive", init_weights=init_weights)
        for layer in mlora_layers(model).values():  # B = 0, so W + (alpha / r) B A is W to the bit
            assert torch.equal(layer.adapted_weight(["default"]), layer.get_base_layer().weight)
            assert layer.mlora_A["default"].abs().sum() > 0
        tokens = toy_tokens()
        torch.testing.assert_close(model(tokens), base(tokens), rtol=1e-6, atol=1e-6)


def test_random_init_is_not_identity() -> None:
    base, model = make_model(init_weights=False)
    tokens = toy_tokens()
    assert (model(tokens) - base(tokens)).abs().max().item() > 0.05


def test_masked_entries_hold_frozen_values_at_init() -> None:
    for mode in MODES:
        _, model = make_model(mode=mode)
        for layer in mlora_layers(model).values():
            mask = layer.mlora_mask["default"]
            A = layer.mlora_A["default"]
            assert torch.equal(A[mask], layer.mlora_frozen["default"][mask])
            if mode == "multiplicative":
                assert (A[mask] == 0).all()
            else:
                assert A[mask].std().item() > 0.5  # N(0, kappa^2) with kappa = 1, far larger than A's own entries


# -- training ---------------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("mode", MODES)
def test_only_adapters_train_and_masked_entries_never_change(mode: str) -> None:
    _, model = make_model(mode=mode)
    trainable = [name for name, parameter in model.named_parameters() if parameter.requires_grad]
    assert trainable and all(".mlora_A." in name or ".mlora_B." in name for name in trainable)
    layers = mlora_layers(model)
    masked_before = {
        key: layer.mlora_A["default"].detach()[layer.mlora_mask["default"]].clone() for key, layer in layers.items()
    }
    base_before = {name: p.detach().clone() for name, p in model.named_parameters() if not p.requires_grad}
    optimizer = torch.optim.Adam([p for p in model.parameters() if p.requires_grad], lr=1e-2)
    tokens, target = toy_tokens(batch=4), torch.randn(4, 5, 8)
    losses = []
    for _ in range(100):
        optimizer.zero_grad()
        loss = (model(tokens) - target).pow(2).mean()
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    assert losses[-1] < 0.8 * losses[0]
    for key, layer in layers.items():
        assert torch.equal(layer.mlora_A["default"].detach()[layer.mlora_mask["default"]], masked_before[key])
        assert torch.equal(layer.effective_A("default").detach()[layer.mlora_mask["default"]], masked_before[key])
    for name, parameter in model.named_parameters():
        if not parameter.requires_grad:
            assert torch.equal(parameter, base_before[name]), name


def test_masks_are_deterministic_and_distinct_per_layer() -> None:
    _, first = make_model()
    _, second = make_model(mask_seed=0)
    _, reseeded = make_model(mask_seed=1)
    layers, again, other = mlora_layers(first), mlora_layers(second), mlora_layers(reseeded)
    for key, layer in layers.items():
        mask = layer.mlora_mask["default"]
        assert torch.equal(mask, again[key].mlora_mask["default"])
        assert not torch.equal(mask, other[key].mlora_mask["default"])
        assert len({tuple(row.tolist()) for row in mask}) == mask.shape[0]
        spec_mask = first.base_model.representation_spec().mask(key)
        assert torch.equal(mask, spec_mask)  # the tuner and the spec agree on every mask


# -- merging ----------------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("asymmetric", [False, True])
def test_merge_unmerge_exact(mode: str, asymmetric: bool) -> None:
    _, model = make_model(mode=mode, asymmetric=asymmetric, init_weights=False)
    tokens = toy_tokens()
    layers = mlora_layers(model)
    weights_before = {key: layer.get_base_layer().weight.detach().clone() for key, layer in layers.items()}
    layer_inputs = {"fc1": torch.randn(3, 16), "conv": torch.randn(2, 12, 5, 1), "embed": toy_tokens()}
    unmerged_layer_outputs = {key: layers[key](x) for key, x in layer_inputs.items()}
    unmerged = model(tokens)
    model.merge_adapter()
    assert all(layer.merged for layer in layers.values())
    for key, x in layer_inputs.items():
        merged_output = layers[key](x)
        # rows of (B A) versus (B A) then rows, and an additive Linear's B (A x) versus (W + B A) x: equal up to
        # rounding; otherwise the same function computes the adapted weight: bit-identical
        if key == "embed" or (key == "fc1" and mode == "additive"):
            torch.testing.assert_close(merged_output, unmerged_layer_outputs[key], rtol=1e-6, atol=1e-6)
        else:
            assert torch.equal(merged_output, unmerged_layer_outputs[key]), key
    torch.testing.assert_close(model(tokens), unmerged, rtol=1e-6, atol=1e-6)
    assert not torch.equal(layers["fc1"].get_base_layer().weight, weights_before["fc1"])
    model.unmerge_adapter()
    for key, layer in layers.items():
        assert torch.equal(layer.get_base_layer().weight, weights_before[key]), key
    assert torch.equal(model(tokens), unmerged)


def test_merge_and_unload_gives_plain_model() -> None:
    _, model = make_model(init_weights=False)
    tokens = toy_tokens()
    expected = model(tokens)
    merged = model.merge_and_unload()
    assert isinstance(merged, ToyModel) and not any(isinstance(m, MLoraLayer) for m in merged.modules())
    torch.testing.assert_close(merged(tokens), expected, rtol=1e-6, atol=1e-6)


def test_safe_merge_refuses_nan_and_changes_nothing() -> None:
    _, model = make_model()
    layer = mlora_layers(model)["fc1"]
    before = layer.get_base_layer().weight.detach().clone()
    with torch.no_grad():
        layer.mlora_B["default"][0, 0] = float("nan")
    with pytest.raises(ValueError, match="NaN"):
        layer.merge(safe_merge=True)
    assert torch.equal(layer.get_base_layer().weight, before) and not layer.merged


# -- several adapters -------------------------------------------------------------------------------------------------
def add_second_adapter(model, mode: str = "multiplicative") -> None:
    model.add_adapter("other", MLoraConfig(r=2, mode=mode, target_modules=TOY_TARGETS, init_weights=False, mask_seed=3))


def test_several_adapters_switch_disable_and_delete() -> None:
    base, model = make_model(init_weights=False)
    add_second_adapter(model)
    tokens = toy_tokens()
    first = model(tokens)
    model.set_adapter("other")
    second = model(tokens)
    assert not torch.allclose(first, second)
    with model.disable_adapter():
        torch.testing.assert_close(model(tokens), base(tokens), rtol=0, atol=0)
    model.delete_adapter("other")
    layer = mlora_layers(model)["fc1"]
    assert set(layer.mlora_A) == {"default"} and set(layer.mlora_mask) == {"default"}
    torch.testing.assert_close(model(tokens), first, rtol=0, atol=0)


def test_two_active_adapters_compose() -> None:
    _, model = make_model(init_weights=False)
    add_second_adapter(model, mode="additive")
    model.base_model.set_adapter(["default", "other"])
    layer = mlora_layers(model)["fc1"]
    weight = layer.get_base_layer().weight
    expected_weight = weight * layer.factor_product("default") + layer.factor_product("other")
    x = torch.randn(3, 16)
    torch.testing.assert_close(layer(x), nn.functional.linear(x, expected_weight, layer.get_base_layer().bias))


def test_adapter_names_mixed_batch_equals_per_adapter_outputs() -> None:
    base, model = make_model(init_weights=False)
    add_second_adapter(model)
    model.eval()
    tokens = toy_tokens(batch=5)
    names = ["default", "other", "__base__", "other", "default"]
    mixed = model(tokens, adapter_names=names)
    expected = {}
    for name in ("default", "other"):
        model.set_adapter(name)
        expected[name] = model(tokens)
    expected["__base__"] = base(tokens)
    for index, name in enumerate(names):
        torch.testing.assert_close(mixed[index], expected[name][index], rtol=1e-6, atol=1e-6)
    with pytest.raises(ValueError, match="Unknown adapter"):
        model(tokens, adapter_names=["default", "typo", "other", "other", "other"])
    with pytest.raises(ValueError, match="one adapter name per sample"):
        model(tokens, adapter_names=["default"])
    model.train()
    with pytest.raises(ValueError, match="eval"):
        model(tokens, adapter_names=names)


# -- save and load ----------------------------------------------------------------------------------------------------
def test_save_load_round_trip_in_process(tmp_path: Path) -> None:
    base, model = make_model(init_weights=False)
    tokens = toy_tokens()
    expected = model(tokens)
    model.save_pretrained(tmp_path)
    saved = json.loads((tmp_path / "adapter_config.json").read_text())
    assert saved["peft_type"] == "MLORA" and saved["mode"] == "multiplicative"
    assert all(".mlora_" in key for key in load_file(tmp_path / "adapter_model.safetensors"))
    assert isinstance(PeftConfig.from_pretrained(tmp_path), MLoraConfig)
    # Asking for PEFT's LoRA config still yields the mLoRA config: it can never reload as additive LoRA.
    assert isinstance(LoraConfig.from_pretrained(tmp_path), MLoraConfig)
    # is_trainable keeps requires_grad as in `model`: PyTorch's CPU convolution kernel choice depends on it.
    loaded = PeftModel.from_pretrained(copy.deepcopy(base), tmp_path, is_trainable=True)
    assert isinstance(loaded.peft_config["default"], MLoraConfig)
    assert torch.equal(loaded(tokens), expected)


def test_save_then_load_in_fresh_process(tmp_path: Path) -> None:
    base, model = make_model(mode="additive", init_weights=False)
    tokens = toy_tokens()
    save_file(base.state_dict(), tmp_path / "base.safetensors")
    model.save_pretrained(tmp_path / "adapter")
    save_file({"tokens": tokens, "expected": model(tokens).detach()}, tmp_path / "io.safetensors")
    script = f"""
import sys, torch
sys.path.insert(0, {str(TESTS_DIR)!r})
import hf_wlora
assert "peft" not in sys.modules, "import hf_wlora must not import peft"
from peft import PeftModel, PeftConfig
from safetensors.torch import load_file
from toy_models import ToyModel
base = ToyModel()
base.load_state_dict(load_file({str(tmp_path / "base.safetensors")!r}))
model = PeftModel.from_pretrained(base, {str(tmp_path / "adapter")!r}, is_trainable=True)
io = load_file({str(tmp_path / "io.safetensors")!r})
assert type(PeftConfig.from_pretrained({str(tmp_path / "adapter")!r})).__name__ == "MLoraConfig"
assert type(model.peft_config["default"]).__name__ == "MLoraConfig"
assert torch.equal(model(io["tokens"]), io["expected"]), "outputs differ after reload"
print("fresh-process-ok")
"""
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    assert "fresh-process-ok" in result.stdout


def test_push_to_hub_and_load_back(hub) -> None:
    base, model = make_model(init_weights=False)
    tokens = toy_tokens()
    repo_id = hub.unique_repo_id("toy-mlora")
    model.push_to_hub(repo_id)
    assert isinstance(PeftConfig.from_pretrained(repo_id), MLoraConfig)
    loaded = PeftModel.from_pretrained(copy.deepcopy(base), repo_id, is_trainable=True)
    assert loaded.peft_config["default"].representation == "mlora_asym"
    assert torch.equal(loaded(tokens), model(tokens))


def test_loading_onto_base_of_other_shapes_is_refused(tmp_path: Path) -> None:
    _, model = make_model()
    model.save_pretrained(tmp_path)
    with pytest.raises(ValueError, match="does not fit the base model"):
        PeftModel.from_pretrained(ToyModel(hidden=24), tmp_path)


# -- the instance-batched path ----------------------------------------------------------------------------------------
def per_instance_factors(model, count: int) -> list[dict[str, torch.Tensor]]:
    generator = torch.Generator().manual_seed(1)
    return [
        {
            name: value.detach() + 0.2 * torch.randn(value.shape, generator=generator)
            for name, value in adapter_factors(model).items()
        }
        for _ in range(count)
    ]


def load_factors(model, factors: dict[str, torch.Tensor]) -> None:
    with torch.no_grad():
        for name, parameter in adapter_factors(model).items():
            parameter.copy_(factors[name])


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("chunk_size", [None, 2])
def test_batched_path_equals_peft_path(mode: str, chunk_size: int | None) -> None:
    _, model = make_model(mode=mode)
    instances = per_instance_factors(model, 5)
    tokens = torch.stack([toy_tokens(seed=i) for i in range(5)])
    batched = batched_forward(model, stack_adapter_factors(instances), tokens, chunk_size=chunk_size)
    for index, factors in enumerate(instances):
        load_factors(model, factors)
        torch.testing.assert_close(batched[index], model(tokens[index]), rtol=1e-5, atol=1e-6)


def test_broadcast_vectorisation_equals_vmap_and_peft_path() -> None:
    torch.manual_seed(0)
    mlp = nn.Sequential(nn.Linear(6, 16), nn.Tanh(), nn.Linear(16, 16), nn.Tanh(), nn.Linear(16, 3))
    model = get_peft_model(mlp, MLoraConfig(r=4, target_modules=["0", "2"], asymmetric_mask=True))
    instances = per_instance_factors(model, 5)
    stacked = stack_adapter_factors(instances)
    coords = torch.rand(5, 7, 6)
    broadcast = batched_forward(model, stacked, coords, vectorize="broadcast", chunk_size=2)
    torch.testing.assert_close(broadcast, batched_forward(model, stacked, coords), rtol=1e-6, atol=1e-7)
    for index, factors in enumerate(instances):
        load_factors(model, factors)
        torch.testing.assert_close(broadcast[index], model(coords[index]), rtol=1e-5, atol=1e-6)
    _, toy = make_model()
    with pytest.raises(ValueError, match="vectorize='vmap'"):
        batched_forward(
            toy, stack_adapter_factors(per_instance_factors(toy, 2)), toy_tokens()[None], vectorize="broadcast"
        )


@pytest.mark.parametrize("vectorize", ["vmap", "broadcast"])
def test_batched_gradients_equal_per_instance_gradients(vectorize: str) -> None:
    if vectorize == "broadcast":  # needs an all-Linear model whose forward broadcasts over a leading dimension
        torch.manual_seed(0)
        mlp = nn.Sequential(nn.Linear(6, 16), nn.Tanh(), nn.Linear(16, 8))
        model = get_peft_model(mlp, MLoraConfig(r=4, target_modules=["0", "2"], asymmetric_mask=True))
        tokens, targets = torch.randn(4, 3, 5, 6), torch.randn(4, 3, 5, 8)
    else:
        _, model = make_model()
        tokens, targets = torch.stack([toy_tokens(seed=i) for i in range(4)]), torch.randn(4, 3, 5, 8)
    instances = per_instance_factors(model, 4)
    stacked = {name: value.clone().requires_grad_(True) for name, value in stack_adapter_factors(instances).items()}

    def loss_fn(outputs: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        return (outputs - target).pow(2).flatten(1).mean(dim=1)

    losses = batched_loss_backward(model, stacked, (tokens,), (targets,), loss_fn, chunk_size=3, vectorize=vectorize)
    parameters = adapter_factors(model)
    for index, factors in enumerate(instances):
        load_factors(model, factors)
        model.zero_grad()
        loss = (model(tokens[index]) - targets[index]).pow(2).mean()
        loss.backward()
        torch.testing.assert_close(losses[index], loss.detach(), rtol=1e-5, atol=1e-7)
        for name, parameter in parameters.items():
            torch.testing.assert_close(stacked[name].grad[index], parameter.grad, rtol=1e-4, atol=1e-6)


def test_batched_path_rejects_bad_factors() -> None:
    _, model = make_model()
    stacked = stack_adapter_factors(per_instance_factors(model, 2))
    tokens = torch.stack([toy_tokens(seed=i) for i in range(2)])
    with pytest.raises(ValueError, match="missing"):
        batched_forward(model, {k: v for k, v in stacked.items() if k != "fc1.A"}, tokens)
    with pytest.raises(ValueError, match="expected"):
        batched_forward(model, {**stacked, "fc1.A": stacked["fc1.A"][:, :2]}, tokens)
    with pytest.raises(ValueError, match="same leading instance dimension"):
        batched_forward(model, stacked, tokens[:1])
    with pytest.raises(ValueError, match="no mLoRA adapter named"):
        batched_forward(model, stacked, tokens, adapter_name="nope")
    targets = torch.zeros(2, *tokens.shape[1:-1], 1)
    with pytest.raises(ValueError, match="missing"):
        batched_loss_backward(model, {k: v for k, v in stacked.items() if k != "fc1.A"}, (tokens,), (targets,), len)
    model.merge_adapter()
    with pytest.raises(ValueError, match="unmerged"):
        batched_forward(model, stacked, tokens)


def test_default_chunks_hold_about_512k_activations_on_the_cpu_and_2m_elsewhere() -> None:
    # 256 points x 128 wide: 16 instances (2 MiB of float32 per activation) on the CPU, all 64 on a GPU-sized target
    assert chunk_size_for((torch.zeros(64, 256, 2),), 128) == 16
    assert chunk_size_for((torch.zeros(64, 256, 2, device="meta"),), 128) == 64
    assert chunk_size_for((torch.zeros(64, 1024, 2),), 256) == 2
    assert chunk_size_for((torch.zeros(3, 4096, 2),), 4096) == 1  # never below one instance
    assert chunk_size_for((torch.zeros(3, 8, 2),), 16) == 3  # never above the instances there are


def test_one_instance_fills_a_chunk_with_the_same_target_of_points() -> None:
    assert points_per_chunk(torch.device("cpu"), 64) == 8192  # 512K / 64: the 3-D fields' decoder pieces
    assert points_per_chunk(torch.device("cpu"), 128) == 4096
    assert points_per_chunk(torch.device("meta"), 128) == 16384
    assert points_per_chunk(torch.device("cpu"), 2**20) == 1  # never below one point
    assert chunk_size_for((torch.zeros(9, points_per_chunk(torch.device("cpu"), 64), 3),), 64) == 1


# -- bad input --------------------------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"r": 0}, "r must be a positive integer"),
        ({"mask_ratio": 1.5}, "mask_ratio"),
        ({"mode": "multiply"}, "mode must be one of"),
        ({"init_std": 0.0}, "identical gradients"),
        ({"rank_pattern": {"fc1": 0}}, "rank_pattern"),
    ],
)
def test_config_errors(kwargs: dict, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        MLoraConfig(**kwargs)


@pytest.mark.parametrize("mode", MODES)
def test_any_rank_is_accepted_but_a_representation_spec_keeps_the_limit(mode: str) -> None:
    # fc2 is 8 x 16: r = 9 exceeds its rank, as PEFT's LoRA allows (all-linear on a model with a narrow head)
    torch.manual_seed(0)
    base = ToyModel()
    model = get_peft_model(copy.deepcopy(base), MLoraConfig(r=9, mode=mode, target_modules=["fc1", "fc2"]))
    assert {key: layer.r["default"] for key, layer in mlora_layers(model).items()} == {"fc1": 9, "fc2": 9}
    tokens = toy_tokens()
    torch.testing.assert_close(model(tokens), base(tokens), rtol=1e-5, atol=1e-5)  # still an identity at init
    optimizer = torch.optim.Adam([p for p in model.parameters() if p.requires_grad], lr=1e-2)
    for _ in range(3):
        optimizer.zero_grad()
        model(tokens).square().mean().backward()
        optimizer.step()
    assert torch.isfinite(model(tokens)).all()
    with pytest.raises(ValueError, match=r"Rank r=9 is larger than layer 'fc2' allows.*rank_pattern"):
        model.base_model.representation_spec()


def test_target_modules_matching_nothing() -> None:
    with pytest.raises(ValueError, match="not found in the base model"):
        get_peft_model(ToyModel(), MLoraConfig(target_modules=["does_not_exist"]))


def test_unsupported_layer_types() -> None:
    with pytest.raises(ValueError, match="LayerNorm, which mLoRA does not support"):
        get_peft_model(ToyModel(), MLoraConfig(target_modules=["norm"]))

    class Attention(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.attention = nn.MultiheadAttention(8, 2)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self.attention(x, x, x)[0]

    with pytest.raises(ValueError, match="MultiheadAttention"):
        get_peft_model(Attention(), MLoraConfig(r=2, target_modules=["out_proj"]))

    class WithMaxNorm(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.embed = nn.Embedding(10, 8, max_norm=1.0)

    with pytest.raises(ValueError, match="max_norm"):
        get_peft_model(WithMaxNorm(), MLoraConfig(r=2, target_modules=["embed"]))


def test_asymmetric_mask_errors_surface_at_injection() -> None:
    with pytest.raises(ValueError, match="r >= 2 in multiplicative mode"):
        get_peft_model(ToyModel(), MLoraConfig(r=1, target_modules=["fc1"], asymmetric_mask=True))


def test_representation_spec_of_an_adapter() -> None:
    _, model = make_model()
    spec = model.base_model.representation_spec()
    assert spec.name == "mlora_asym"
    assert [layer.name for layer in spec.layers] == ["embed", "conv", "fc1", "fc2"]
    assert spec.factor_shapes() == {name: tuple(v.shape) for name, v in adapter_factors(model).items()}
    assert hf_wlora.MLoraConfig is MLoraConfig
