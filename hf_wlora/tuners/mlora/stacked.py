"""One multiplicative linear layer for N instances at once, as a single autograd function.

The instance-batched path (`functional.batched_forward` with vectorize="broadcast") runs every adapted `nn.Linear`
with stacked factors A (N, r, d_in) and B (N, d_out, r): instance n computes y_n = x_n (W ⊙ M_n)^T + b with
M_n = (alpha / r) B_n A_n. Composed from torch operations this takes several element-wise passes over N weight-sized
tensors per layer and direction (the product, its scaling, the Hadamard product and their gradients) and runs the
batched matmul against a transposed view of the adapted weights, which MKL executes markedly slower than a
contiguous operand (`benchmarks/bench_mlora.py`, RESULTS.md).

`stacked_multiplicative_linear` builds the adapted weights directly in the matmul's layout, (W ⊙ M_n)^T = (s W^T) ⊙
(A_n^T B_n^T) with the scale s folded into the shared weight once, and writes its backward by hand:

    dL/d(W ⊙ M_n)^T = x_n^T g_n,   G_n = that ⊙ (s W^T),   dL/dA_n = B_n^T G_n^T,   dL/dB_n = G_n^T A_n^T = (A_n G_n)^T,

with the frozen mask entries of A getting zero gradient, exactly as `torch.where` gives them in the composed form.
The base weight and bias are constants here (the layer's callers check it), so their gradients are never formed.
"""

from __future__ import annotations

from typing import Any

import torch


class _StackedMultiplicativeLinear(torch.autograd.Function):
    @staticmethod
    def forward(
        ctx: Any,
        x: torch.Tensor,
        A: torch.Tensor,
        B: torch.Tensor,
        scaled_weight_t: torch.Tensor,
        bias: torch.Tensor | None,
        mask: torch.Tensor | None,
        frozen: torch.Tensor | None,
    ) -> torch.Tensor:
        effective_A = A if mask is None else torch.where(mask, frozen, A)
        adapted_t = torch.bmm(effective_A.transpose(1, 2), B.transpose(1, 2)).mul_(scaled_weight_t)
        out = torch.bmm(x, adapted_t) if bias is None else torch.baddbmm(bias, x, adapted_t)
        ctx.save_for_backward(x, effective_A, B, adapted_t, scaled_weight_t, mask)
        return out

    @staticmethod
    def backward(ctx: Any, grad_out: torch.Tensor) -> tuple[torch.Tensor | None, ...]:
        if torch.is_grad_enabled():  # create_graph=True: the adapted weights were built without a graph
            raise RuntimeError(
                "The fused instance-stacked mLoRA layer has first derivatives only, and this backward asked for a "
                "graph of the gradient (create_graph=True, e.g. for a loss on gradients). Pass vectorize='vmap' to "
                "batched_forward / batched_loss_backward: it computes the composed form, which can be differentiated "
                "twice."
            )
        x, effective_A, B, adapted_t, scaled_weight_t, mask = ctx.saved_tensors
        grad_x = torch.bmm(grad_out, adapted_t.transpose(1, 2)) if ctx.needs_input_grad[0] else None
        grad_product_t = torch.bmm(x.transpose(1, 2), grad_out).mul_(scaled_weight_t)  # (N, d_in, d_out)
        grad_A = torch.bmm(B.transpose(1, 2), grad_product_t.transpose(1, 2))
        if mask is not None:
            grad_A.masked_fill_(mask, 0.0)
        # (A_n G_n)^T rather than G_n^T A_n^T: the same sums (rounded in another order), but a product with r rows
        # instead of r columns, which MKL runs about 5x faster (27 against 130 us for 16 instances at 128 wide)
        grad_B = torch.bmm(effective_A, grad_product_t).transpose(1, 2)
        return grad_x, grad_A, grad_B, None, None, None, None


def stacked_multiplicative_linear(
    x: torch.Tensor,
    A: torch.Tensor,
    B: torch.Tensor,
    weight: torch.Tensor,
    bias: torch.Tensor | None,
    scaling: float,
    mask: torch.Tensor | None = None,
    frozen: torch.Tensor | None = None,
) -> torch.Tensor:
    """x_n (W ⊙ M_n)^T + b for N instances, M_n = scaling * B_n A_n with A's `mask` entries set to `frozen`.

    Args:
        x: (N, ..., d_in) inputs, instance n's along the first dimension.
        A, B: Stacked factors (N, r, d_in) and (N, d_out, r).
        weight, bias: The shared base weight (d_out, d_in) and bias (d_out,) or None: constants (no gradient).
        scaling: alpha / r.
        mask, frozen: The asymmetric mask (r, d_in) bool and its frozen values, or None for no mask.

    Returns:
        (N, ..., d_out), equal to the composed form up to float rounding; gradients flow to x, A and B (first
        derivatives only: differentiating the gradient again, `create_graph=True`, raises).
    """
    flat = x.reshape(x.shape[0], -1, x.shape[-1])
    scaled_weight_t = weight.t().mul(scaling).contiguous()
    frozen = None if mask is None else frozen.to(A.dtype)
    out = _StackedMultiplicativeLinear.apply(flat, A, B, scaled_weight_t, bias, mask, frozen)
    return out.reshape(*x.shape[:-1], out.shape[-1])


__all__ = ["stacked_multiplicative_linear"]
