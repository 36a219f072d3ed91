"""The mLoRA tuner follows PEFT's conventions: transformers' Conv1D, B (A x) for additive adapters, meta-device
loading (low_cpu_mem_usage), half-precision bases with fp32 adapters, and the init names."""

from __future__ import annotations

import copy
from pathlib import Path

import pytest
import torch
from peft import (
    PeftModel,
    get_peft_model,
    get_peft_model_state_dict,
    inject_adapter_in_model,
    set_peft_model_state_dict,
)
from torch import nn
from transformers.pytorch_utils import Conv1D

from hf_wlora import MLoraConfig
from hf_wlora.tuners.mlora import MLoraLayer

from toy_models import TOY_TARGETS, ToyModel, toy_tokens

MODES = ["multiplicative", "additive"]
KINDS = [(mode, asymmetric) for mode in MODES for asymmetric in (False, True)]


class TwoConv1D(nn.Module):
    """GPT-2's layer type: weights stored in x out."""

    def __init__(self) -> None:
        super().__init__()
        self.c_fc = Conv1D(24, 10)
        self.c_proj = Conv1D(6, 24)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.c_proj(torch.tanh(self.c_fc(x)))


class TwoLinear(nn.Module):
    """TwoConv1D with nn.Linear layers holding the transposed weights."""

    def __init__(self, conv_model: TwoConv1D) -> None:
        super().__init__()
        self.c_fc, self.c_proj = nn.Linear(10, 24), nn.Linear(24, 6)
        with torch.no_grad():
            for name in ("c_fc", "c_proj"):
                getattr(self, name).weight.copy_(getattr(conv_model, name).weight.T)
                getattr(self, name).bias.copy_(getattr(conv_model, name).bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.c_proj(torch.tanh(self.c_fc(x)))


def _layers(model: nn.Module) -> dict[str, MLoraLayer]:
    return {layer.layer_key: layer for layer in model.modules() if isinstance(layer, MLoraLayer)}


@pytest.mark.parametrize("mode, asymmetric", KINDS)
def test_transformers_conv1d_equals_the_same_adapter_on_linear(mode: str, asymmetric: bool) -> None:
    torch.manual_seed(0)
    conv_base = TwoConv1D()
    linear_base = TwoLinear(conv_base)
    config = MLoraConfig(r=4, mode=mode, asymmetric_mask=asymmetric, target_modules=["c_fc", "c_proj"])
    conv_model = get_peft_model(conv_base, copy.deepcopy(config), autocast_adapter_dtype=False)
    linear_model = get_peft_model(linear_base, copy.deepcopy(config))
    assert {key: (layer.out_features, layer.in_features) for key, layer in _layers(conv_model).items()} == {
        "c_fc": (24, 10),
        "c_proj": (6, 24),
    }
    generator = torch.Generator().manual_seed(1)
    with torch.no_grad():  # the same random (non-identity) factors in both
        for key, layer in _layers(conv_model).items():
            for factor in ("A", "B"):
                values = torch.randn(getattr(layer, f"mlora_{factor}")["default"].shape, generator=generator)
                getattr(layer, f"mlora_{factor}")["default"].copy_(0.5 * values + (mode == "multiplicative"))
                getattr(_layers(linear_model)[key], f"mlora_{factor}")["default"].copy_(
                    getattr(layer, f"mlora_{factor}")["default"]
                )
    x = torch.randn(3, 5, 10)
    expected = linear_model(x)
    torch.testing.assert_close(conv_model(x), expected, rtol=1e-5, atol=1e-5)
    conv_model.merge_adapter()
    torch.testing.assert_close(conv_model(x), expected, rtol=1e-5, atol=1e-5)
    merged = conv_model.merge_and_unload()
    assert isinstance(merged.c_fc, Conv1D)
    torch.testing.assert_close(merged(x), expected, rtol=1e-5, atol=1e-5)


def test_additive_linear_forward_is_low_rank_and_equals_the_merged_weight(monkeypatch: pytest.MonkeyPatch) -> None:
    torch.manual_seed(0)
    model = get_peft_model(ToyModel(), MLoraConfig(r=4, mode="additive", target_modules=["fc1"], init_weights=False))
    layer = _layers(model)["fc1"]
    x = torch.randn(7, 16)
    expected = nn.functional.linear(x, layer.adapted_weight(["default"]), layer.get_base_layer().bias)

    def no_matrix(adapter_name: str) -> torch.Tensor:
        raise AssertionError("the additive forward formed the d_out x d_in update")

    monkeypatch.setattr(layer, "factor_product", no_matrix)
    torch.testing.assert_close(layer(x), expected, rtol=1e-6, atol=1e-6)


def test_an_additive_adapter_before_a_multiplicative_one_is_scaled_by_its_m() -> None:
    torch.manual_seed(0)
    model = get_peft_model(ToyModel(), MLoraConfig(r=4, mode="additive", target_modules=["fc1"], init_weights=False))
    model.add_adapter("gate", MLoraConfig(r=4, target_modules=["fc1"], init_weights=False))
    model.base_model.set_adapter(["default", "gate"])
    layer = _layers(model)["fc1"]
    weight = layer.get_base_layer().weight
    expected_weight = (weight + layer.factor_product("default")) * layer.factor_product("gate")
    x = torch.randn(3, 16)
    torch.testing.assert_close(layer(x), nn.functional.linear(x, expected_weight, layer.get_base_layer().bias))


@pytest.mark.parametrize("mode, asymmetric", KINDS)
def test_low_cpu_mem_usage_loads_onto_meta_factors(tmp_path: Path, mode: str, asymmetric: bool) -> None:
    config = MLoraConfig(r=4, mode=mode, asymmetric_mask=asymmetric, target_modules=TOY_TARGETS, init_weights=False)
    torch.manual_seed(0)
    # frozen as inside a PEFT model: PyTorch's CPU convolution picks another kernel for a weight that requires grad
    base = ToyModel().requires_grad_(False)
    model = get_peft_model(copy.deepcopy(base), copy.deepcopy(config))
    tokens = toy_tokens()
    expected = model(tokens)
    model.save_pretrained(tmp_path)

    loaded = PeftModel.from_pretrained(copy.deepcopy(base), tmp_path, low_cpu_mem_usage=True)
    assert {parameter.device.type for parameter in loaded.parameters()} == {"cpu"}
    # loaded for inference (factors without grad), the convolution may take another CPU kernel: equal up to rounding
    torch.testing.assert_close(loaded(tokens), expected, rtol=1e-6, atol=1e-6)

    injected = inject_adapter_in_model(copy.deepcopy(config), copy.deepcopy(base), low_cpu_mem_usage=True)
    assert "meta" in {parameter.device.type for parameter in injected.parameters()}
    result = set_peft_model_state_dict(injected, get_peft_model_state_dict(model), low_cpu_mem_usage=True)
    assert not result.unexpected_keys
    assert {parameter.device.type for parameter in injected.parameters()} == {"cpu"}
    torch.testing.assert_close(injected(tokens), expected, rtol=0, atol=0)


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
@pytest.mark.parametrize("mode, asymmetric", KINDS)
def test_half_precision_base_gets_fp32_adapters(dtype: torch.dtype, mode: str, asymmetric: bool) -> None:
    config = MLoraConfig(r=4, mode=mode, asymmetric_mask=asymmetric, target_modules=["fc1", "fc2"], init_weights=False)
    torch.manual_seed(0)
    base = ToyModel()
    reference = get_peft_model(copy.deepcopy(base), copy.deepcopy(config))
    half = get_peft_model(copy.deepcopy(base).to(dtype), copy.deepcopy(config))  # autocast_adapter_dtype=True
    half.load_state_dict(reference.state_dict(), strict=False)  # the same factors (cast to the slots' dtype)
    adapter_dtypes = {parameter.dtype for name, parameter in half.named_parameters() if "mlora_" in name}
    assert adapter_dtypes == {torch.float32}
    x = torch.randn(4, 16)
    layer = half.base_model.model.fc1
    out = layer(x.to(dtype))
    assert out.dtype == dtype
    expected = reference.base_model.model.fc1(x)
    torch.testing.assert_close(out.float(), expected, rtol=0.03, atol=0.03)
    out.float().sum().backward()  # the fp32 factors receive fp32 gradients
    assert layer.mlora_A["default"].grad.dtype == torch.float32
    kept = get_peft_model(copy.deepcopy(base).to(dtype), copy.deepcopy(config), autocast_adapter_dtype=False)
    assert {p.dtype for name, p in kept.named_parameters() if "mlora_" in name} == {dtype}


def test_init_weights_names() -> None:
    assert MLoraConfig(init_weights="gaussian").init_weights == "gaussian"
    for bad in ("kaiming", 1, None):
        with pytest.raises(ValueError, match="init_weights must be True"):
            MLoraConfig(init_weights=bad)
