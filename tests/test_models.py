"""Stage 3's model: the weight tokenisations (exact inverses) and WeightSpaceDiT (init, save/load, batching, errors)."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from hf_wlora import LayerSpec, RepresentationSpec
from hf_wlora.models import WeightSpaceDiT, rank_token_layout, tensor_token_layout, token_layout
from hf_wlora.spec import REPRESENTATIONS


def make_spec(name: str) -> RepresentationSpec:
    """Layers of different shapes and (for the LoRA kinds) different ranks, so padding is exercised."""
    if name.startswith("mlp"):
        layers = [LayerSpec("in", 12, 9, bias=True), LayerSpec("mid", 12, 12, bias=True), LayerSpec("out", 3, 12)]
    else:
        layers = [LayerSpec("in", 12, 7, r=3), LayerSpec("mid", 12, 12, r=4), LayerSpec("out", 5, 12, r=2)]
    return RepresentationSpec.from_name(name, layers)


def layouts(name: str) -> list:
    spec = make_spec(name)
    found = [tensor_token_layout(spec, chunk_size=10), tensor_token_layout(spec, chunk_size=1000)]
    return found + ([] if name.startswith("mlp") else [rank_token_layout(spec)])


# --- tokenisation ---------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", REPRESENTATIONS)
def test_tokenisations_are_exact_inverses_for_every_kind(name: str) -> None:
    spec = make_spec(name)
    vectors = torch.randn(5, spec.num_parameters, dtype=torch.float64)
    for layout in layouts(name):
        tokens = layout.tokenize(vectors)
        assert tokens.shape == (5, layout.num_groups, layout.group_size, layout.token_dim)
        assert torch.equal(layout.detokenize(tokens), vectors), layout
        # every weight sits in exactly one slot and every other slot is zero padding
        assert int((tokens != 0).sum()) == vectors.numel()
        assert torch.equal(layout.tokenize(layout.detokenize(tokens)), tokens)


@pytest.mark.parametrize("name", ["lora", "lora_asym", "mlora", "mlora_asym"])
def test_rank_tokens_pair_row_k_of_a_with_column_k_of_b(name: str) -> None:
    spec = make_spec(name)
    vectors = torch.randn(2, spec.num_parameters)
    factors = spec.unflatten(vectors)
    layout = rank_token_layout(spec)
    tokens = layout.tokenize(vectors)
    assert layout.group_names == ("in", "mid", "out") and layout.group_size == 4
    for group, layer in enumerate(spec.layers):
        for k in range(layer.r):
            expected = torch.cat([factors[f"{layer.name}.A"][:, k], factors[f"{layer.name}.B"][:, :, k]], dim=1)
            assert torch.equal(tokens[:, group, k, : layer.d_in + layer.d_out], expected)
        assert layout.valid[group].tolist() == [k < layer.r for k in range(4)]


def test_tensor_tokens_are_one_per_factor_chunked() -> None:
    spec = make_spec("mlp")
    layout = tensor_token_layout(spec, chunk_size=100)
    # in.weight 108 -> 2 chunks, in.bias 12, mid.weight 144 -> 2 chunks, mid.bias 12, out.weight 36
    assert layout.group_names == (
        "in.weight#0",
        "in.weight#1",
        "in.bias#0",
        "mid.weight#0",
        "mid.weight#1",
        "mid.bias#0",
        "out.weight#0",
    )
    assert layout.token_dim == 100 and layout.group_size == 1


def test_tokenisation_errors_name_the_fix() -> None:
    with pytest.raises(ValueError, match="use tokenization='tensor'"):
        rank_token_layout(make_spec("mlp"))
    with pytest.raises(ValueError, match="tokenization must be"):
        token_layout(make_spec("mlora"), "bytes")
    with pytest.raises(ValueError, match="chunk_size must be a positive integer"):
        tensor_token_layout(make_spec("mlora"), 0)
    with pytest.raises(ValueError, match=r"Expected weight vectors of shape \(N, 187\)"):
        rank_token_layout(make_spec("mlora")).tokenize(torch.zeros(2, 186))


def test_spec_flatten_and_unflatten_round_trip() -> None:
    spec = make_spec("mlp_asym")
    factors = {name: torch.randn(3, 2, *shape) for name, shape in spec.factor_shapes().items()}
    vectors = spec.flatten(factors)
    assert vectors.shape == (3, 2, spec.num_parameters)
    assert all(torch.equal(spec.unflatten(vectors)[name], value) for name, value in factors.items())
    with pytest.raises(ValueError, match="missing"):
        spec.flatten({name: value for name, value in factors.items() if name != "in.bias"})
    with pytest.raises(ValueError, match="belong to another representation"):
        spec.unflatten(torch.zeros(3, spec.num_parameters + 1))


# --- WeightSpaceDiT -------------------------------------------------------------------------------------------------


def make_model(name: str = "mlora_asym", **kwargs) -> WeightSpaceDiT:
    torch.manual_seed(0)
    options = {"hidden_size": 32, "num_layers": 2, "num_heads": 4, **kwargs}
    return WeightSpaceDiT(make_spec(name).to_dict(), **options).eval()


def randomise(model: WeightSpaceDiT) -> WeightSpaceDiT:
    """Give the zero-initialised maps (adaLN-Zero, output) random values, so outputs depend on every input."""
    generator = torch.Generator().manual_seed(1)
    with torch.no_grad():
        for parameter in model.parameters():
            if not parameter.abs().sum():
                parameter.copy_(0.1 * torch.randn(parameter.shape, generator=generator))
    return model


def test_a_fresh_model_predicts_zero_and_tokenises_by_kind() -> None:
    model = make_model()
    sample = torch.randn(3, model.num_parameters)
    assert torch.equal(model(sample, 10).sample, torch.zeros_like(sample))
    assert model.tokens.kind == "rank" and len(model.layer_encoder) == len(model.layer_decoder) == 1
    mlp = make_model("mlp")
    assert mlp.tokens.kind == "tensor" and len(mlp.layer_encoder) == 0 and mlp.rank_embedding is None
    assert make_model(tokenization="tensor").tokens.kind == "tensor"


@pytest.mark.parametrize("name", ["mlora_asym", "lora", "mlp_asym"])
def test_batched_prediction_equals_one_sample_at_a_time(name: str) -> None:
    model = randomise(make_model(name, num_classes=3))
    sample = torch.randn(4, model.num_parameters)
    timesteps, labels = torch.tensor([0, 10, 500, 999]), torch.tensor([0, 1, 2, 3])
    batched = model(sample, timesteps, labels).sample
    assert batched.abs().sum() > 0
    for index in range(4):
        single = model(sample[index : index + 1], timesteps[index : index + 1], labels[index : index + 1]).sample
        torch.testing.assert_close(single[0], batched[index], atol=1e-5, rtol=1e-5)


def test_timestep_and_class_condition_the_prediction() -> None:
    model = randomise(make_model(num_classes=3))
    sample = torch.randn(1, model.num_parameters).expand(4, -1)
    out = model(sample, torch.tensor([5, 5, 5, 900]), torch.tensor([0, 1, 3, 0])).sample
    assert not torch.allclose(out[0], out[1]) and not torch.allclose(out[0], out[2])  # class, "no class"
    assert not torch.allclose(out[0], out[3])  # timestep
    assert torch.equal(model(sample, 5).sample[0], model(sample, 5, torch.full((4,), 3)).sample[0])  # None = no class


def test_save_and_load_round_trip_keeps_outputs_and_normalisation(tmp_path: Path) -> None:
    model = randomise(make_model(num_classes=3, class_names=["a", "b", "c"], encoding={"steps": 7}))
    model.set_normalization(torch.randn(10, model.num_parameters) * 3 + 1)
    model.save_pretrained(tmp_path)
    loaded = WeightSpaceDiT.from_pretrained(tmp_path).eval()
    sample = torch.randn(2, model.num_parameters)
    assert torch.equal(loaded(sample, 3, torch.tensor([0, 2])).sample, model(sample, 3, torch.tensor([0, 2])).sample)
    assert torch.equal(loaded.weight_std, model.weight_std) and torch.equal(loaded.weight_mean, model.weight_mean)
    assert loaded.spec == model.spec and loaded.config.class_names == ["a", "b", "c"]
    assert loaded.config.encoding == {"steps": 7}
    assert {path.name for path in tmp_path.iterdir()} == {"config.json", "diffusion_pytorch_model.safetensors"}


def test_normalisation_round_trips_and_restores_frozen_entries() -> None:
    model = make_model("mlora_asym")
    frozen, values = model.spec.frozen_entries()
    assert frozen.any() and torch.equal(values[frozen], torch.zeros(int(frozen.sum())))
    vectors = torch.randn(20, model.num_parameters) * torch.linspace(0.1, 2, model.num_parameters) + 1
    vectors[:, frozen] = 0.0  # what every fitted mlora_asym weight holds there
    model.set_normalization(vectors)
    expected_std = vectors.double().std(dim=0, unbiased=False)
    torch.testing.assert_close(model.weight_std[~frozen].double(), expected_std[~frozen])
    assert torch.equal(model.weight_std[frozen], torch.ones(int(frozen.sum())))  # constant coordinates
    torch.testing.assert_close(model.denormalize(model.normalize(vectors)), vectors)
    generated = model.denormalize(torch.randn(5, model.num_parameters))
    assert torch.equal(generated[:, frozen], torch.zeros(5, int(frozen.sum())))  # the mask holds exactly


def test_bad_inputs_raise_clear_errors() -> None:
    model = make_model(num_classes=3)
    sample = torch.zeros(2, model.num_parameters)
    with pytest.raises(ValueError, match=r"sample must be \(N, 187\) weight vectors of the spec mlora_asym"):
        model(torch.zeros(2, 188), 1)
    with pytest.raises(ValueError, match=r"class_labels must be in \[0, 2\] \(or 3 for no class\)"):
        model(sample, 1, torch.tensor([0, 4]))
    with pytest.raises(ValueError, match="timestep must be a scalar or"):
        model(sample, torch.tensor([1, 2, 3]))
    with pytest.raises(ValueError, match="This model is unconditional"):
        make_model()(sample, 1, torch.tensor([0, 1]))
    with pytest.raises(ValueError, match="num_heads=5 must divide hidden_size=32"):
        make_model(num_heads=5)
    with pytest.raises(ValueError, match="at least 2 weight vectors"):
        model.set_normalization(torch.zeros(1, model.num_parameters))
    with pytest.raises(ValueError, match="NaN or infinite"):
        model.set_normalization(torch.full((3, model.num_parameters), float("nan")))
