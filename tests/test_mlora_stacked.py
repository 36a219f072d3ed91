"""The fused instance-stacked multiplicative linear layer: the same values and gradients as the composed form."""

from __future__ import annotations

import pytest
import torch
from peft import get_peft_model
from torch import nn

import hf_wlora
from hf_wlora.spec import asymmetric_mask, frozen_values
from hf_wlora.tuners.mlora import adapter_factors, batched_loss_backward
from hf_wlora.tuners.mlora.stacked import stacked_multiplicative_linear


def composed(x, A, B, weight, bias, scaling, mask, frozen):
    effective = A if mask is None else torch.where(mask, frozen, A)
    adapted = weight * (B @ effective) * scaling  # (N, d_out, d_in)
    out = torch.einsum("npi,noi->npo", x.reshape(x.shape[0], -1, x.shape[-1]), adapted)
    out = out if bias is None else out + bias
    return out.reshape(*x.shape[:-1], -1)


@pytest.mark.parametrize("masked", [False, True])
@pytest.mark.parametrize("with_bias", [False, True])
def test_values_and_gradients_equal_the_composed_form(masked: bool, with_bias: bool) -> None:
    generator = torch.Generator().manual_seed(0)
    num, rank, d_in, d_out = 3, 2, 5, 4
    x = torch.randn(num, 2, 3, d_in, generator=generator, dtype=torch.float64, requires_grad=True)
    A = (1 + 0.3 * torch.randn(num, rank, d_in, generator=generator, dtype=torch.float64)).requires_grad_(True)
    B = (1 + 0.3 * torch.randn(num, d_out, rank, generator=generator, dtype=torch.float64)).requires_grad_(True)
    weight = torch.randn(d_out, d_in, generator=generator, dtype=torch.float64)
    bias = torch.randn(d_out, generator=generator, dtype=torch.float64) if with_bias else None
    mask = asymmetric_mask(rank, d_in, 0.4, 0, "layer", keep_every_column=True) if masked else None
    frozen = frozen_values(rank, d_in, True, 1.0, 0, "layer").double() if masked else None
    arguments = (weight, bias, 0.5, mask, frozen)

    fused = stacked_multiplicative_linear(x, A, B, *arguments)
    reference = composed(x, A, B, *arguments)
    assert fused.shape == (num, 2, 3, d_out)
    torch.testing.assert_close(fused, reference, rtol=1e-12, atol=1e-12)
    upstream = torch.randn(fused.shape, generator=generator, dtype=torch.float64)
    grads = torch.autograd.grad(fused, (x, A, B), upstream)
    expected = torch.autograd.grad(reference, (x, A, B), upstream)
    for got, want in zip(grads, expected, strict=True):
        torch.testing.assert_close(got, want, rtol=1e-12, atol=1e-12)
    if masked:
        assert (grads[1][:, mask] == 0).all()  # frozen entries of A never move
    assert torch.autograd.gradcheck(lambda x, A, B: stacked_multiplicative_linear(x, A, B, *arguments), (x, A, B))
    # the adapted weights are built without a graph: a second derivative (an eikonal loss's) must fail, not be wrong
    fused = stacked_multiplicative_linear(x, A, B, *arguments)
    with pytest.raises(RuntimeError, match=r"first derivatives only.*Pass vectorize='vmap'"):
        torch.autograd.grad(fused, x, upstream, create_graph=True)


def test_the_batched_fitting_path_uses_it_and_matches_the_peft_slot(monkeypatch) -> None:
    torch.manual_seed(0)
    base = nn.Sequential(
        nn.Linear(2, 16), nn.ReLU(), nn.Linear(16, 16), nn.ReLU(), nn.Linear(16, 16), nn.ReLU(), nn.Linear(16, 3)
    )
    config = hf_wlora.MLoraConfig(r=2, target_modules=["2", "4"], asymmetric_mask=True, init_weights=False)
    model = get_peft_model(base, config)
    slot = adapter_factors(model)
    factors = {
        name: (value.detach() + 0.1 * torch.randn(4, *value.shape)).requires_grad_(True) for name, value in slot.items()
    }
    coords, targets = torch.rand(4, 10, 2), torch.rand(4, 10, 3)

    def loss_fn(outputs: torch.Tensor, wanted: torch.Tensor) -> torch.Tensor:
        return (outputs - wanted).pow(2).flatten(1).mean(dim=1)

    import hf_wlora.tuners.mlora.layer as layer_module

    calls = []
    original = layer_module.stacked_multiplicative_linear
    monkeypatch.setattr(layer_module, "stacked_multiplicative_linear", lambda *args: calls.append(1) or original(*args))
    losses = batched_loss_backward(model, factors, (coords,), (targets,), loss_fn, vectorize="broadcast")
    assert len(calls) == 2  # both adapted layers, one chunk
    for index in range(4):  # each instance through the PEFT slot, the composed layer code
        with torch.no_grad():
            for name, parameter in slot.items():
                parameter.copy_(factors[name][index])
                parameter.grad = None
        loss = loss_fn(model(coords[index])[None], targets[index][None]).sum()
        loss.backward()
        torch.testing.assert_close(losses[index], loss.detach())
        for name, parameter in slot.items():
            torch.testing.assert_close(factors[name].grad[index], parameter.grad, rtol=1e-5, atol=1e-6)
