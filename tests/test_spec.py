"""The representation spec: masks, frozen values, shapes, validation and JSON round trips."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from hf_wlora.spec import (
    REPRESENTATIONS,
    LayerSpec,
    RepresentationSpec,
    asymmetric_mask,
    frozen_values,
    hash_normal,
    hash_stream,
)

LAYERS = (LayerSpec("trunk.0", 32, 16, 4), LayerSpec("trunk.1", 32, 32, 4), LayerSpec("head", 3, 32, 2))


def test_hash_stream_is_pinned() -> None:
    # Published weight data sets depend on these exact values: changing the generator breaks their masks.
    assert hash_stream(0, "layer", 3).tolist() == [11329848579270650611, 1220521990134221524, 17108158705109204327]
    assert hash_stream(1, "layer", 1)[0] != hash_stream(0, "layer", 1)[0]
    assert hash_stream(0, "other", 1)[0] != hash_stream(0, "layer", 1)[0]


def test_hash_normal_statistics() -> None:
    values = hash_normal((200_000,), seed=3, key="x")
    assert abs(values.mean().item()) < 0.01
    assert abs(values.std().item() - 1.0) < 0.01
    assert torch.equal(values, hash_normal((200_000,), seed=3, key="x"))


@pytest.mark.parametrize("keep_every_column", [True, False])
def test_mask_rows_distinct_counts_and_determinism(keep_every_column: bool) -> None:
    mask = asymmetric_mask(8, 64, 0.25, seed=0, key="trunk.0", keep_every_column=keep_every_column)
    assert mask.dtype == torch.bool and mask.shape == (8, 64)
    assert mask.sum(dim=1).tolist() == [16] * 8
    assert len({tuple(row.tolist()) for row in mask}) == 8
    assert torch.equal(mask, asymmetric_mask(8, 64, 0.25, seed=0, key="trunk.0", keep_every_column=keep_every_column))
    assert not torch.equal(mask, asymmetric_mask(8, 64, 0.25, 1, "trunk.0", keep_every_column=keep_every_column))
    assert not torch.equal(mask, asymmetric_mask(8, 64, 0.25, 0, "trunk.1", keep_every_column=keep_every_column))
    if keep_every_column:
        assert (~mask).sum(dim=0).min().item() >= 1


def test_mask_errors_name_the_fix() -> None:
    with pytest.raises(ValueError, match="r >= 2"):
        asymmetric_mask(1, 16, 0.25, 0, "a", keep_every_column=True)
    with pytest.raises(ValueError, match="only 2 sets exist"):
        asymmetric_mask(4, 2, 0.5, 0, "a", keep_every_column=False)
    with pytest.raises(ValueError, match="Lower mask_ratio"):
        asymmetric_mask(2, 8, 0.9, 0, "a", keep_every_column=True)
    with pytest.raises(ValueError, match="freeze no entry"):
        asymmetric_mask(4, 8, 0.01, 0, "a", keep_every_column=False)


def test_frozen_values() -> None:
    assert torch.equal(frozen_values(4, 8, zeros=True, kappa=2.0, seed=0, key="a"), torch.zeros(4, 8))
    values = frozen_values(64, 512, zeros=False, kappa=2.0, seed=0, key="a")
    assert abs(values.std().item() - 2.0) < 0.05


@pytest.mark.parametrize("name", REPRESENTATIONS)
def test_from_name_and_json_round_trip(name: str, tmp_path) -> None:
    kind = name.split("_")[0]
    layers = tuple(LayerSpec(layer.name, layer.d_out, layer.d_in, None, bias=True) for layer in LAYERS)
    spec = RepresentationSpec.from_name(name, layers if kind == "mlp" else LAYERS, mask_seed=7)
    assert spec.name == name
    assert RepresentationSpec.from_json_string(spec.to_json_string()) == spec
    assert RepresentationSpec.load(spec.save(tmp_path)) == spec
    assert RepresentationSpec.load(tmp_path) == spec
    for layer in spec.layers:
        mask = spec.mask(layer.name)
        assert mask.shape == spec.factor_shapes()[spec.masked_factor(layer.name)]
        assert bool(mask.any()) == spec.asymmetric


def test_factor_shapes_and_size() -> None:
    spec = RepresentationSpec(kind="mlora", layers=LAYERS, asymmetric=True)
    assert spec.factor_shapes() == {
        "trunk.0.A": (4, 16),
        "trunk.0.B": (32, 4),
        "trunk.1.A": (4, 32),
        "trunk.1.B": (32, 4),
        "head.A": (2, 32),
        "head.B": (3, 2),
    }
    assert spec.num_parameters == 4 * 16 + 32 * 4 + 4 * 32 + 32 * 4 + 2 * 32 + 3 * 2
    assert torch.equal(spec.frozen_values("head"), torch.zeros(2, 32))
    mlp = RepresentationSpec(kind="mlp", layers=(LayerSpec("l0", 8, 2, bias=True), LayerSpec("l1", 1, 8)))
    assert mlp.factor_shapes() == {"l0.weight": (8, 2), "l0.bias": (8,), "l1.weight": (1, 8)}


def test_differences_are_named() -> None:
    spec = RepresentationSpec(kind="mlora", layers=LAYERS, asymmetric=True)
    other = RepresentationSpec(
        kind="mlora", layers=(*LAYERS[:2], LayerSpec("head", 3, 32, 3)), asymmetric=True, mask_seed=5
    )
    differences = spec.differences(other)
    assert any(d.startswith("mask_seed: 0 != 5") for d in differences)
    assert any("layer 'head'" in d for d in differences)
    assert spec.differences(RepresentationSpec.from_dict(spec.to_dict())) == []
    with pytest.raises(ValueError, match="mask_seed"):
        spec.check_matches(other, what="the data set")


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"kind": "conv"}, "Unknown kind"),
        ({"mask_ratio": 1.0}, "mask_ratio"),
        ({"alpha": 0.0}, "alpha"),
        ({"kappa": -1.0}, "kappa"),
        ({"layers": ()}, "at least one layer"),
        ({"layers": (LAYERS[0], LAYERS[0])}, "unique"),
        ({"layers": (LayerSpec("x", 4, 4),)}, "needs a rank"),
    ],
)
def test_invalid_specs(kwargs: dict, message: str) -> None:
    arguments = {"kind": "mlora", "layers": LAYERS, **kwargs}
    with pytest.raises(ValueError, match=message):
        RepresentationSpec(**arguments)


def test_layer_rank_checks() -> None:
    with pytest.raises(ValueError, match="at most 3"):
        LayerSpec("head", 3, 32, 4)
    with pytest.raises(ValueError, match="must be a positive integer, got 0"):
        LayerSpec("head", 3, 32, 0)
    with pytest.raises(ValueError, match="r >= 2"):
        RepresentationSpec(kind="mlora", layers=(LayerSpec("head", 1, 32, 1),), asymmetric=True)
    with pytest.raises(ValueError, match="Unknown fields"):
        RepresentationSpec.from_dict({**RepresentationSpec(kind="lora", layers=LAYERS).to_dict(), "extra": 1})
    with pytest.raises(ValueError, match="JSON"):
        RepresentationSpec.from_json_string("{not json")


def test_masks_do_not_depend_on_numpy_or_torch_rng_state() -> None:
    spec = RepresentationSpec(kind="lora", layers=LAYERS, asymmetric=True)
    first = {name: mask.clone() for name, mask in spec.masks().items()}
    torch.manual_seed(123)
    np.random.seed(123)
    assert all(torch.equal(first[name], mask) for name, mask in spec.masks().items())
