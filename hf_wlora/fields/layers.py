"""Building blocks of the neural field: Fourier features, modulated linear layers, mapping network, blocks.

Everything here is a pure function of parameters, buffers and inputs (no `.item()`, no data-dependent branching,
no in-place ops on inputs), so the baked field composes with `torch.func.functional_call` and `torch.func.vmap`.
"""

from __future__ import annotations

import itertools
import math
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

# Gains making E[act(x)^2] = 1 for x ~ N(0, 1), so activations keep unit scale through the (demodulated) stack.
# leaky_relu: sqrt(2 / (1 + 0.2^2)); relu: sqrt(2); silu and gelu measured numerically (1e7 samples).
_ACTIVATION_GAINS: dict[str, float] = {
    "leaky_relu": math.sqrt(2.0 / 1.04),
    "relu": math.sqrt(2.0),
    "silu": 1.6766,
    "gelu": 1.5337,
}
# StyleGAN2's epsilon inside the demodulation square root; bake() uses the same value so both forms agree.
DEMODULATION_EPS = 1e-8


# 1/sqrt(2) keeps the residual stream at unit scale, as in StyleGAN2's residual blocks
_RESIDUAL_SCALE = math.sqrt(0.5)


class _Sigmoid(torch.autograd.Function):
    """1 / (1 + exp(-x)), rounded the same way wherever an element lies in its tensor.

    torch.sigmoid (and F.silu) compute the last elements of each thread's range, the scalar tail of the vectorised
    loop, with another exp than the rest, so an element's value depended on its position: of identical instances
    fitted together the one whose points fell in the tail drifted from the others, and a batched fit differed from
    fitting each instance alone. exp, add and reciprocal round every element alike (tests/test_fields.py checks it).
    Both derivatives are sigmoid's own, y (1 - y) t, which stays finite where exp(-x) overflows. Half-precision
    inputs are computed in float32 and rounded back once, as accurate as torch.sigmoid (exp(-x) alone overflows
    float16 below x = -11), and in their own dtype under autocast.
    """

    generate_vmap_rule = True  # composes with torch.func.vmap and functional_call, like the rest of this module

    @staticmethod
    def forward(x: Tensor) -> Tensor:
        exact = x if x.dtype in (torch.float32, torch.float64) else x.float()
        return torch.exp(-exact).add_(1.0).reciprocal_().to(x.dtype)

    @staticmethod
    def setup_context(ctx: Any, inputs: tuple[Tensor], output: Tensor) -> None:
        ctx.save_for_backward(output)
        ctx.save_for_forward(output)

    @staticmethod
    def backward(ctx: Any, grad: Tensor) -> Tensor:
        (result,) = ctx.saved_tensors
        return torch.ops.aten.sigmoid_backward(grad, result)

    @staticmethod
    def jvp(ctx: Any, tangent: Tensor) -> Tensor:  # forward mode: torch.func.jacfwd, hessian, jvp
        (result,) = ctx.saved_tensors
        return torch.ops.aten.sigmoid_backward(tangent, result)


def sigmoid(x: Tensor) -> Tensor:
    """The logistic sigmoid, each element rounded independently of its position in `x` (see `_Sigmoid`); integer
    and boolean inputs give the default float dtype, as torch.sigmoid does."""
    return _Sigmoid.apply(x if x.is_floating_point() else x.to(torch.get_default_dtype()))


def _without_gain(x: Tensor, name: str) -> Tensor:
    """The named activation without its gain."""
    if name == "leaky_relu":
        return F.leaky_relu(x, 0.2)
    if name == "relu":
        return F.relu(x)
    if name == "silu":
        return x * sigmoid(x)
    if name == "gelu":
        return F.gelu(x)
    raise ValueError(f"unknown activation {name!r}")


def activate(x: Tensor, name: str | None) -> Tensor:
    """Apply the named hidden activation with its unit-variance gain (`None`: identity)."""
    if name is None:
        return x
    activated = _without_gain(x, name)
    # relu's backward reads its output, so its gain makes a new tensor; the others' read their input, and scaling
    # their output in place saves a pass over every point's activations (2-8% of a 128-wide fitting step)
    return activated * _ACTIVATION_GAINS[name] if name == "relu" else activated.mul_(_ACTIVATION_GAINS[name])


def residual_update(h: Tensor, z: Tensor, name: str | None) -> Tensor:
    """A residual block's output (h + activate(z, name)) / sqrt(2).

    No new tensor beside the activation's (relu: one; silu: its sigmoid's as well): these passes over every point's
    activations are a large part of a fitting step beside the matmuls (benchmarks/bench_encode.py). The result is
    bit-identical to the composed form, and every element is rounded the same way wherever it lies in the tensor: a
    fused `add(..., alpha=gain)` is not (its vectorised body and scalar tail round differently), which made the last
    of several identical instances fitted together drift from the others.
    """
    if name is None:
        return (h + z).mul_(_RESIDUAL_SCALE)
    # `activate` returns a tensor no backward reads (relu's output stays untouched), so the steps can run in place
    return activate(z, name).add_(h).mul_(_RESIDUAL_SCALE)


class FourierFeatures(nn.Module):
    """gamma(p) = [p, sin(2 pi B p), cos(2 pi B p)] with a fixed frequency matrix B (num_features, coord_dim).

    B is a persistent buffer: it is saved with the model, so loaded fields never depend on how it was drawn.
    Frequencies are in cycles per unit of coordinate.
    """

    def __init__(
        self,
        coord_dim: int,
        num_features: int,
        kind: str = "gaussian",
        scale: float = 4.0,
        include_input: bool = True,
        seed: int = 0,
    ) -> None:
        super().__init__()
        self.coord_dim = coord_dim
        self.num_features = num_features
        self.kind = kind
        self.scale = float(scale)
        self.include_input = include_input
        self.seed = seed
        # Allocated with the ambient device (transformers builds models on the meta device before loading), filled
        # only when real: a loaded checkpoint overwrites it anyway.
        self.register_buffer("frequencies", torch.empty(num_features, coord_dim), persistent=True)
        if not self.frequencies.is_meta:
            with torch.no_grad():
                self.frequencies.copy_(self.make_frequencies())

    @property
    def out_dim(self) -> int:
        return 2 * self.num_features + (self.coord_dim if self.include_input else 0)

    def make_frequencies(self) -> Tensor:
        """Draw B deterministically from the seed (on CPU, so the draw is identical on every device)."""
        if self.kind == "gaussian":
            generator = torch.Generator(device="cpu").manual_seed(self.seed)
            shape = (self.num_features, self.coord_dim)
            freqs = torch.randn(shape, generator=generator, dtype=torch.float64, device="cpu")
            freqs = freqs * self.scale
        elif self.kind == "log_linear":
            # axis-aligned bands from 0.5 cycles per unit (one period over [-1, 1]) up to `scale`
            per_axis = self.num_features // self.coord_dim
            top = math.log2(max(self.scale, 0.5))
            bands = torch.logspace(-1.0, top, per_axis, base=2.0, dtype=torch.float64, device="cpu")
            eye = torch.eye(self.coord_dim, dtype=torch.float64, device="cpu")
            freqs = (bands[:, None, None] * eye[None]).reshape(-1, self.coord_dim)
        else:
            raise ValueError(f"unknown Fourier feature type {self.kind!r}")
        return freqs.to(torch.float32)

    def forward(self, coords: Tensor) -> Tensor:
        if coords.dim() > 2 and coords.shape[0] > 1 and coords.stride(0) == 0 and not coords.requires_grad:
            # The same points for every instance (one pixel grid expanded over the instances, as the batched fit
            # passes it): encoded once, and the result stays expanded, so the first layer's batched matmul reads one
            # copy of the features from the cache instead of N from memory. Bit-identical to encoding every copy.
            # (Not when gradients with respect to the coordinates are wanted: those would all land on the first copy.)
            return self.forward(coords[:1]).expand(coords.shape[0], *coords.shape[1:-1], self.out_dim)
        angles = (2.0 * math.pi) * (coords @ self.frequencies.T)
        parts = [angles.sin(), angles.cos()]
        if self.include_input:
            parts.insert(0, coords)
        return torch.cat(parts, dim=-1)


class ModulatedLinear(nn.Module):
    """StyleGAN2/CIPS modulated fully connected layer.

    With style s = affine(w) (one scale per input channel):
        W'_ij = W_ij * s_j,   demodulated: W''_ij = W'_ij / sqrt(sum_k W'_ik^2 + eps),   y = W'' x + b.
    It is computed without materialising per-instance weights: y = d * (W (s * x)) + b with
    d_i = rsqrt(sum_j W_ij^2 s_j^2 + eps), which broadcasts over any leading instance dimensions of s and x.
    """

    def __init__(self, in_features: int, out_features: int, style_dim: int, demodulate: bool = True) -> None:
        super().__init__()
        self.in_features = in_features
        self.out_features = out_features
        self.demodulate = demodulate
        self.weight = nn.Parameter(torch.empty(out_features, in_features))
        self.bias = nn.Parameter(torch.empty(out_features))
        self.affine = nn.Linear(style_dim, in_features)
        self.reset_parameters()

    def reset_parameters(self) -> None:
        # (torch.nn.init calls are guarded by transformers while it initialises a model, so loaded tensors are kept.)
        # Same as nn.Linear's default for W and b. The affine starts near s = 1 (bias 1, as in StyleGAN2) with
        # std 1/sqrt(style_dim) per weight so a unit-scale w moves each style by O(1).
        nn.init.kaiming_uniform_(self.weight, a=math.sqrt(5))
        bound = 1.0 / math.sqrt(self.in_features)
        nn.init.uniform_(self.bias, -bound, bound)
        nn.init.normal_(self.affine.weight, std=1.0 / math.sqrt(self.affine.in_features))
        nn.init.ones_(self.affine.bias)

    def forward(self, x: Tensor, w: Tensor) -> Tensor:
        """x: (..., P, in); w: (..., style_dim) whose leading dims broadcast against x's instance dims."""
        s = self.affine(w).unsqueeze(-2)  # (..., 1, in): one style per instance, shared by its P points
        h = F.linear(x * s, self.weight)
        if self.demodulate:
            h = h * torch.rsqrt((s * s) @ (self.weight * self.weight).T + DEMODULATION_EPS)
        return h + self.bias

    @torch.no_grad()
    def fold(self, w: Tensor) -> tuple[Tensor, Tensor]:
        """(weight, bias) of the plain linear layer equal to this layer at style input `w` (style_dim,).

        Computed in float64 so the folded layer matches the modulated one to float32 rounding.
        """
        w64 = w.to(torch.float64)
        s = F.linear(w64, self.affine.weight.to(torch.float64), self.affine.bias.to(torch.float64))
        weight = self.weight.to(torch.float64) * s[None, :]
        if self.demodulate:
            weight = weight * torch.rsqrt((weight * weight).sum(dim=1, keepdim=True) + DEMODULATION_EPS)
        return weight, self.bias.to(torch.float64)


class MappingLinear(nn.Linear):
    """A mapping-network layer: N(0, 1/fan_in) weights and zero bias, so w keeps unit scale (StyleGAN2's
    equalised init without the run-time rescaling). A subclass only to carry this init."""

    def reset_parameters(self) -> None:
        nn.init.normal_(self.weight, std=1.0 / math.sqrt(self.in_features))
        if self.bias is not None:
            nn.init.zeros_(self.bias)


class MappingNetwork(nn.Module):
    """z -> w: `num_layers` linear layers with leaky ReLU (StyleGAN2); with 0 layers, w = z."""

    def __init__(self, latent_dim: int, style_dim: int, num_layers: int) -> None:
        super().__init__()
        dims = [latent_dim] + [style_dim] * num_layers
        self.layers = nn.ModuleList(MappingLinear(a, b) for a, b in itertools.pairwise(dims))

    def forward(self, z: Tensor) -> Tensor:
        for layer in self.layers:
            z = activate(layer(z), "leaky_relu")
        return z


class ModulatedBlock(nn.Module):
    """Modulated linear layer + activation, optionally residual: h <- (h + act(layer(h, w))) / sqrt(2)."""

    def __init__(
        self,
        in_features: int,
        out_features: int,
        style_dim: int,
        activation: str | None,
        demodulate: bool,
        residual: bool,
    ) -> None:
        super().__init__()
        self.modulated = ModulatedLinear(in_features, out_features, style_dim, demodulate)
        self.activation = activation
        self.residual = residual

    def forward(self, h: Tensor, w: Tensor) -> Tensor:
        z = self.modulated(h, w)
        return residual_update(h, z, self.activation) if self.residual else activate(z, self.activation)


class LinearBlock(nn.Module):
    """The baked counterpart of `ModulatedBlock`: a plain `nn.Linear` named `linear` (what a LoRA targets)."""

    def __init__(self, in_features: int, out_features: int, activation: str | None, residual: bool) -> None:
        super().__init__()
        self.linear = nn.Linear(in_features, out_features)
        self.activation = activation
        self.residual = residual

    def forward(self, h: Tensor) -> Tensor:
        z = self.linear(h)
        return residual_update(h, z, self.activation) if self.residual else activate(z, self.activation)


def apply_output_activation(values: Tensor, name: str) -> Tensor:
    """Map the head's raw output to the field's value range."""
    if name == "sigmoid":
        return sigmoid(values)
    if name == "clamp":
        return values.clamp(0.0, 1.0)
    if name == "none":
        return values
    raise ValueError(f"unknown output activation {name!r}")
