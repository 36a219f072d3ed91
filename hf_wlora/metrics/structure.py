"""Weight-space structure (the paper, §4.2): do two fits of one instance agree, and does one linear mode hold both?

The study fits one instance twice, from an initialisation i1 and from a correlated one i2 =
sqrt(1 - lambda^2) i1 + lambda eps (`correlated_initialization`), then compares the two fitted weight vectors by
their cosine similarity (`cosine_similarity`) and by the barrier of a reconstruction metric along the straight line
between them (`interpolation_weights` gives the points on the line, `interpolation_barrier` the barrier of the metric
evaluated there).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import overload

import numpy as np
import torch
from torch import Tensor

from ..checks import check_int


def cosine_similarity(weights_a: Tensor, weights_b: Tensor) -> Tensor:
    """Cosine similarity of each pair of flat weight vectors: (N, P) and (N, P) -> (N,) float64.

    Computed in float64, so that vectors of many parameters do not lose the digits that tell fits apart, and clamped
    to [-1, 1] against rounding. A zero vector has no direction, so it is an error rather than a silent NaN.
    """
    if weights_a.shape != weights_b.shape or weights_a.dim() != 2:
        raise ValueError(
            f"weights_a {tuple(weights_a.shape)} and weights_b {tuple(weights_b.shape)} must both be (N, P) flat "
            "weight vectors of the same shape; flatten each instance's weights first (RepresentationSpec.flatten)."
        )
    a, b = (weights.detach().to(torch.float64) for weights in (weights_a, weights_b))
    for name, weights in (("weights_a", a), ("weights_b", b)):
        if not torch.isfinite(weights).all():
            raise ValueError(f"{name} contains NaN or infinite weights.")
    norm_a, norm_b = torch.linalg.vector_norm(a, dim=1), torch.linalg.vector_norm(b, dim=1)
    zero = ((norm_a == 0) | (norm_b == 0)).nonzero().flatten().tolist()
    if zero:
        raise ValueError(f"Instances {zero} have an all-zero weight vector, whose cosine similarity is undefined.")
    return ((a * b).sum(dim=1) / (norm_a * norm_b)).clamp(-1.0, 1.0)


Moments = tuple[Tensor, Tensor]  # entry-wise (mean, std) of an initialisation's distribution


@overload
def correlated_initialization(
    initial: Tensor,
    lam: float,
    generator: torch.Generator,
    frozen: Tensor | None = None,
    distribution: Moments | None = None,
) -> Tensor: ...


@overload
def correlated_initialization(
    initial: Mapping[str, Tensor],
    lam: float,
    generator: torch.Generator,
    frozen: Mapping[str, Tensor] | None = None,
    distribution: Mapping[str, Moments] | None = None,
) -> dict[str, Tensor]: ...


def correlated_initialization(
    initial: Tensor | Mapping[str, Tensor],
    lam: float,
    generator: torch.Generator,
    frozen: Tensor | Mapping[str, Tensor] | None = None,
    distribution: Moments | Mapping[str, Moments] | None = None,
) -> Tensor | dict[str, Tensor]:
    """A second initialisation correlated with i1 by lam, perturbing the random part of i1 (the paper's §4.2).

    With `distribution` = (mean, std) of the law i1 was drawn from (entry-wise tensors, or numbers), i1 = mean +
    std * xi1 and i2 = mean + std * xi2 with xi2 = sqrt(1 - lam^2) * xi1 + lam * eps, eps ~ N(0, I): lam = 0 gives i1
    again, lam = 1 an independent draw of the same law, whatever its mean and scale (entries with std 0 are not
    random and stay). Without `distribution` the law is taken as N(0, 1): i2 = sqrt(1 - lam^2) * i1 + lam * eps.

    `initial` is one tensor or a mapping of factor names to tensors (a field's initial weights). "Per tensor", as the
    paper applies it, means each tensor gets its own independent standard-normal eps of its own shape and the same
    formula with the same lam; eps is drawn from `generator` in the mapping's order, in float64, on the generator's
    device, so one seed gives one i2. eps is drawn whatever lam is, so a sweep over lam that reseeds the generator
    with one seed reuses one eps. lam must lie in [0, 1]: lam = 0 returns an exact copy of i1. i2 has the law of i1
    and correlation sqrt(1 - lam^2) with it. For a mapping, `distribution` maps names to (mean, std); names it
    lacks are taken as N(0, 1).

    `frozen` holds bool masks (True = frozen; the asymmetric mask of `RepresentationSpec.masks`), one tensor for a
    tensor `initial` or a mapping for a mapping, where names it lacks freeze nothing: frozen entries keep i1's value,
    because training never moves them and both fits must share them. The result has the dtype and device of i1.
    """
    if not (isinstance(lam, (int, float)) and 0.0 <= lam <= 1.0):
        raise ValueError(f"lam must be a number in [0, 1] (0 copies the initialisation, 1 is pure noise), got {lam!r}.")
    if not isinstance(generator, torch.Generator):
        raise ValueError(f"generator must be a torch.Generator (seed it for a reproducible i2), got {type(generator)}.")
    if isinstance(initial, Tensor):
        if frozen is not None and not isinstance(frozen, Tensor):
            raise ValueError("A tensor initialisation takes one bool tensor as its frozen mask, not a mapping.")
        if distribution is not None and not isinstance(distribution, tuple):
            raise ValueError("A tensor initialisation takes one (mean, std) pair as its distribution, not a mapping.")
        return _correlate("initial", initial, lam, generator, frozen, distribution)
    if not isinstance(initial, Mapping):
        raise ValueError(f"initial must be a tensor or a mapping of names to tensors, got {type(initial)}.")
    masks: Mapping[str, Tensor] = {} if frozen is None else frozen
    if not isinstance(masks, Mapping):
        raise ValueError("A mapping initialisation takes a mapping of names to bool masks as frozen, not a tensor.")
    unknown = sorted(set(masks) - set(initial))
    if unknown:
        raise ValueError(
            f"frozen has masks for {unknown}, which are not tensors of the initialisation {list(initial)}."
        )
    laws: Mapping[str, Moments] = {} if distribution is None else distribution
    if not isinstance(laws, Mapping):
        raise ValueError("A mapping initialisation takes a mapping of names to (mean, std) as distribution.")
    unknown = sorted(set(laws) - set(initial))
    if unknown:
        raise ValueError(f"distribution has moments for {unknown}, which are not tensors of the initialisation.")
    return {
        name: _correlate(name, tensor, lam, generator, masks.get(name), laws.get(name))
        for name, tensor in initial.items()
    }


def _correlate(
    name: str,
    initial: Tensor,
    lam: float,
    generator: torch.Generator,
    frozen: Tensor | None,
    distribution: Moments | None,
) -> Tensor:
    if not initial.is_floating_point():
        raise ValueError(f"Tensor {name!r} has dtype {initial.dtype}; initial weights must be floating point.")
    if not torch.isfinite(initial).all():
        raise ValueError(f"Tensor {name!r} contains NaN or infinite weights.")
    if frozen is not None and (frozen.dtype != torch.bool or frozen.shape != initial.shape):
        raise ValueError(
            f"The frozen mask of {name!r} must be a bool tensor of the tensor's shape {tuple(initial.shape)}, got "
            f"{frozen.dtype} {tuple(frozen.shape)}."
        )
    noise = torch.randn(initial.shape, generator=generator, dtype=torch.float64, device=generator.device)
    i1 = initial.detach().to(torch.float64)
    if distribution is None:
        mixed = math.sqrt(1.0 - lam**2) * i1 + lam * noise.to(i1.device)
    else:
        mean, std = (torch.as_tensor(value, dtype=torch.float64).to(i1.device) for value in distribution)
        if torch.broadcast_shapes(mean.shape, std.shape, i1.shape) != i1.shape or not (std >= 0).all():
            raise ValueError(
                f"The distribution of {name!r} must be a mean and a non-negative std broadcastable to its shape "
                f"{tuple(i1.shape)}, got {tuple(mean.shape)} and {tuple(std.shape)}."
            )
        mixed = mean + math.sqrt(1.0 - lam**2) * (i1 - mean) + lam * std * noise.to(i1.device)
    if frozen is not None:
        mixed = torch.where(frozen.to(i1.device), i1, mixed)
    return mixed.to(initial.dtype)


def interpolation_weights(start: Tensor, end: Tensor, num_points: int) -> Tensor:
    """Evenly spaced points on the straight line from `start` to `end` (flat (P,) vectors): (num_points, P).

    Row k is (1 - alpha_k) * start + alpha_k * end with alpha = linspace(0, 1, num_points). It is computed in float64
    and returned in the inputs' dtype, so the first and last rows are exactly `start` and `end`.
    """
    if start.dim() != 1 or start.shape != end.shape:
        raise ValueError(
            f"start {tuple(start.shape)} and end {tuple(end.shape)} must be flat (P,) weight vectors of the same "
            "length; flatten an instance's weights first (RepresentationSpec.flatten)."
        )
    if not (start.is_floating_point() and end.is_floating_point()):
        raise ValueError(f"start and end must be floating point, got {start.dtype} and {end.dtype}.")
    check_int(num_points, "num_points", minimum=2)  # the two endpoints at least
    a, b = (vector.detach().to(torch.float64) for vector in (start, end))
    if not (torch.isfinite(a).all() and torch.isfinite(b).all()):
        raise ValueError("start or end contains NaN or infinite weights.")
    alpha = torch.linspace(0.0, 1.0, num_points, dtype=torch.float64, device=a.device).unsqueeze(1)
    return ((1.0 - alpha) * a + alpha * b.to(a.device)).to(torch.promote_types(start.dtype, end.dtype))


def interpolation_barrier(values: Sequence[float] | np.ndarray | Tensor, higher_is_better: bool) -> float:
    """Linear-mode-connectivity barrier of a metric evaluated along the line between two weight vectors.

    `values[k]` is the metric at alpha_k = k / (len(values) - 1) (as `interpolation_weights` spaces the points):
    values[0] at the first fit, values[-1] at the second. The barrier is how far the path falls short of the chord
    (1 - alpha) v0 + alpha v1 joining its end values, at its worst point: for a higher-is-better metric (PSNR) the
    largest drop max_alpha [chord(alpha) - v(alpha)], for a lower-is-better one (Chamfer) the largest rise
    max_alpha [v(alpha) - chord(alpha)], in the metric's own units.

    The maximum runs over every alpha including the endpoints, where the gap is 0 by definition (Entezari et al.'s
    sup over [0, 1]), so the barrier is never negative: a path everywhere at least as good as its chord, flat or
    bulging better, has barrier 0. That makes the mean over instances a mean of shortfalls that better-than-chord
    paths cannot cancel. The metric must be finite everywhere: cap a perfect reconstruction's PSNR (+inf) first.
    """
    path = np.asarray(torch.as_tensor(values).detach().cpu(), dtype=np.float64)
    if path.ndim != 1 or len(path) < 3:
        raise ValueError(
            f"values must be a 1-D sequence of at least 3 metric values (the two endpoints and a point between), "
            f"got shape {path.shape}."
        )
    if not np.isfinite(path).all():
        raise ValueError("values contains NaN or infinite metric values; cap an infinite PSNR before the barrier.")
    alpha = np.linspace(0.0, 1.0, len(path))
    # v0 + alpha (v1 - v0) is exactly v0 for a flat path, so identical endpoints on a flat path give exactly 0
    chord = path[0] + alpha * (path[-1] - path[0])
    shortfall = chord - path if higher_is_better else path - chord
    return float(max(0.0, shortfall[1:-1].max()))
