"""Weight vectors <-> tokens for the weight-space diffusion transformer, derived from the representation spec.

A flat weight vector (the spec's layout, `RepresentationSpec.flatten`) becomes a dense token tensor
`(N, groups, group_size, token_dim)`; padding is zero and ignored. Two tokenisations:

- **rank** (the LoRA kinds, the paper's hierarchical LoRA layer encoder): one group per adapted layer, one token per
  rank component k: the pair (row k of A, column k of B), i.e. `d_in + d_out` values. Layers of smaller rank or
  narrower shapes are padded to the widest.
- **tensor** (HyperDiffusion's tokenisation, the baseline): one token per factor tensor (a weight, a bias, an A or a
  B), flattened and cut into chunks of at most `chunk_size` values when large; every token is its own group.

Both are one gather (tokenise) and one gather (detokenise) through index tables computed once from the spec, so
`detokenize(tokenize(x))` equals `x` bit for bit and every weight sits in exactly one token slot.
"""

from __future__ import annotations

import itertools
import math

import torch
from torch import nn

from ..checks import check_int
from ..spec import RepresentationSpec

TOKENIZATIONS = ("rank", "tensor")
DEFAULT_CHUNK_SIZE = 1024


class TokenLayout(nn.Module):
    """Where each weight of a flat vector sits among the tokens (index tables as buffers, so they follow `.to()`).

    Attributes:
        kind: "rank" or "tensor".
        group_names: one name per group ("{layer}" for rank tokens, "{factor}#{chunk}" for tensor tokens).
        group_size: tokens per group (the largest rank; 1 for tensor tokens).
        token_dim: values per token (padded to the longest token).
        index: (groups, group_size, token_dim) int64: the flat position each slot reads, `num_parameters` for
            padding (tokenise gathers from the vector with a zero appended).
        position: (num_parameters,) int64: the slot (in the flattened token tensor) each weight is written to.
        valid: (groups, group_size) bool: which tokens exist (False for rank components a smaller layer lacks).
    """

    index: torch.Tensor
    position: torch.Tensor
    valid: torch.Tensor

    def __init__(
        self,
        kind: str,
        group_names: tuple[str, ...],
        index: torch.Tensor,
        position: torch.Tensor,
        valid: torch.Tensor,
    ) -> None:
        super().__init__()
        self.kind = kind
        self.group_names = group_names
        self.group_size, self.token_dim = index.shape[1], index.shape[2]
        # derived from the spec: never saved with a model
        self.register_buffer("index", index, persistent=False)
        self.register_buffer("position", position, persistent=False)
        self.register_buffer("valid", valid, persistent=False)

    @property
    def num_groups(self) -> int:
        return len(self.group_names)

    @property
    def num_parameters(self) -> int:
        return self.position.numel()

    def tokenize(self, vectors: torch.Tensor) -> torch.Tensor:
        """(N, num_parameters) weight vectors -> (N, groups, group_size, token_dim) tokens, zero-padded."""
        if vectors.dim() != 2 or vectors.shape[1] != self.num_parameters:
            raise ValueError(
                f"Expected weight vectors of shape (N, {self.num_parameters}), got {tuple(vectors.shape)}: the "
                "weights must follow the model's representation spec."
            )
        padded = torch.cat([vectors, vectors.new_zeros(vectors.shape[0], 1)], dim=1)
        tokens = padded.index_select(1, self.index.reshape(-1))
        return tokens.reshape(vectors.shape[0], *self.index.shape)

    def detokenize(self, tokens: torch.Tensor) -> torch.Tensor:
        """(N, groups, group_size, token_dim) tokens -> (N, num_parameters) weight vectors (padding dropped)."""
        if tuple(tokens.shape[1:]) != tuple(self.index.shape):
            raise ValueError(f"Expected tokens of shape (N, *{tuple(self.index.shape)}), got {tuple(tokens.shape)}.")
        return tokens.reshape(tokens.shape[0], -1).index_select(1, self.position)

    def extra_repr(self) -> str:
        return f"kind={self.kind!r}, groups={self.num_groups}, group_size={self.group_size}, token_dim={self.token_dim}"


def _layout(kind: str, groups: dict[str, torch.Tensor], group_size: int, num_parameters: int) -> TokenLayout:
    """Pack each group's tokens, a (tokens, length) tensor of flat positions, into a dense `TokenLayout`."""
    token_dim = max(tokens.shape[1] for tokens in groups.values())
    index = torch.full((len(groups), group_size, token_dim), num_parameters, dtype=torch.int64)
    valid = torch.zeros(len(groups), group_size, dtype=torch.bool)
    for g, tokens in enumerate(groups.values()):
        index[g, : tokens.shape[0], : tokens.shape[1]] = tokens
        valid[g, : tokens.shape[0]] = True
    flat_index = index.reshape(-1)
    used = flat_index < num_parameters
    position = torch.empty(num_parameters, dtype=torch.int64)
    position[flat_index[used]] = torch.arange(flat_index.numel())[used]
    if int(used.sum()) != num_parameters or torch.unique(flat_index[used]).numel() != num_parameters:
        raise AssertionError("a token layout must place every weight in exactly one slot")  # a bug, not bad input
    return TokenLayout(kind, tuple(groups), index, position, valid)


def _offsets(spec: RepresentationSpec) -> dict[str, int]:
    """Where each factor starts in the flat weight vector."""
    sizes = [math.prod(shape) for shape in spec.factor_shapes().values()]
    starts = [0, *itertools.accumulate(sizes)][:-1]
    return dict(zip(spec.factor_shapes(), starts, strict=True))


def rank_token_layout(spec: RepresentationSpec) -> TokenLayout:
    """One group per layer, one token per rank component: (A[k, :], B[:, k])."""
    if spec.kind == "mlp":
        raise ValueError(
            f"Rank tokens need LoRA factors, but {spec.name} weights are whole weight matrices; use "
            "tokenization='tensor' (HyperDiffusion's one token per weight tensor)."
        )
    offsets = _offsets(spec)
    groups = {}
    for layer in spec.layers:
        rank = torch.arange(layer.r).unsqueeze(1)  # type: ignore[arg-type]
        a_row = offsets[f"{layer.name}.A"] + rank * layer.d_in + torch.arange(layer.d_in)  # A is (r, d_in)
        b_column = offsets[f"{layer.name}.B"] + torch.arange(layer.d_out) * layer.r + rank  # B is (d_out, r)
        groups[layer.name] = torch.cat([a_row, b_column], dim=1)
    group_size = max(layer.r for layer in spec.layers)  # type: ignore[type-var]
    return _layout("rank", groups, group_size, spec.num_parameters)


def tensor_token_layout(spec: RepresentationSpec, chunk_size: int = DEFAULT_CHUNK_SIZE) -> TokenLayout:
    """One token per factor tensor, cut into chunks of at most `chunk_size` values."""
    check_int(chunk_size, "chunk_size", minimum=1)
    groups = {}
    for (name, shape), start in zip(spec.factor_shapes().items(), _offsets(spec).values(), strict=True):
        positions = torch.arange(start, start + math.prod(shape))
        for chunk, values in enumerate(positions.split(chunk_size)):
            groups[f"{name}#{chunk}"] = values.unsqueeze(0)
    return _layout("tensor", groups, 1, spec.num_parameters)


def token_layout(
    spec: RepresentationSpec, tokenization: str = "auto", chunk_size: int = DEFAULT_CHUNK_SIZE
) -> TokenLayout:
    """The layout of `tokenization` ("rank", "tensor", or "auto": rank for LoRA kinds, tensor for the mlp kinds)."""
    if tokenization == "auto":
        tokenization = "tensor" if spec.kind == "mlp" else "rank"
    if tokenization == "rank":
        return rank_token_layout(spec)
    if tokenization == "tensor":
        return tensor_token_layout(spec, chunk_size)
    raise ValueError(f"tokenization must be 'auto' or one of {TOKENIZATIONS}, got {tokenization!r}.")
