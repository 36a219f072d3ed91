"""`WeightSpaceDiT`: a diffusion transformer over the weights of a representation spec (a diffusers model).

It denoises flat weight vectors `(N, num_parameters)` in the spec's layout (`RepresentationSpec.flatten`), normalised
per coordinate with statistics of the training weights that the model keeps as buffers (`normalize` on the way in,
`denormalize` on the way out, which also restores the asymmetric mask's frozen entries exactly).

Tokens come from the spec (`hf_wlora.models.tokenization`):

- LoRA kinds, the paper's **hierarchical LoRA layer encoder**: each rank component k of layer l is a token
  (row k of A, column k of B), projected by a per-layer linear map; a rank-index embedding is added and
  `num_layer_blocks` DiT blocks attend among the r tokens of each layer (within-layer structure); then a layer-index
  embedding is added and `num_layers` DiT blocks attend across all tokens of all layers (cross-layer structure); a
  mirror decoder (`num_layer_blocks` within-layer blocks, per-layer output maps) returns (a, b) vectors. Every token
  keeps its identity through the backbone: no pooling, so the decoder needs no un-pooling.
- mlp kinds, **HyperDiffusion's tokenisation**: one token per weight tensor (chunked when large) with its own
  projection and position embedding, and the backbone alone (no within-layer stage, since a token has no rank).

Every block is DiT's adaLN-Zero block, conditioned on the timestep embedding plus, for class-conditional models, a
class embedding whose extra "null" class serves classifier-free guidance (label dropout happens in training).
Blocks and output maps start at zero, so a fresh model predicts 0.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from diffusers import ConfigMixin, ModelMixin
from diffusers.configuration_utils import register_to_config
from diffusers.models.embeddings import TimestepEmbedding, Timesteps
from diffusers.utils import BaseOutput
from torch import nn

from ..checks import check_int, complete_from_pretrained
from ..spec import RepresentationSpec
from .tokenization import DEFAULT_CHUNK_SIZE, TokenLayout, token_layout


@dataclass
class WeightSpaceDiTOutput(BaseOutput):
    """Output of `WeightSpaceDiT`.

    Args:
        sample (`torch.Tensor` of shape `(N, num_parameters)`): the prediction (noise, clean sample or velocity, as the
            scheduler it was trained with defines), in the normalised weight space.
    """

    sample: torch.Tensor


def _modulate(x: torch.Tensor, shift: torch.Tensor, scale: torch.Tensor) -> torch.Tensor:
    return x * (1 + scale) + shift


class DiTBlock(nn.Module):
    """Pre-norm self-attention and MLP, each shifted, scaled and gated by the conditioning (adaLN-Zero)."""

    def __init__(self, hidden_size: int, num_heads: int, mlp_ratio: float, dropout: float) -> None:
        super().__init__()
        self.num_heads, self.dropout = num_heads, dropout
        self.norm1 = nn.LayerNorm(hidden_size, elementwise_affine=False, eps=1e-6)
        self.qkv = nn.Linear(hidden_size, 3 * hidden_size)
        self.proj = nn.Linear(hidden_size, hidden_size)
        self.norm2 = nn.LayerNorm(hidden_size, elementwise_affine=False, eps=1e-6)
        inner = int(hidden_size * mlp_ratio)
        self.mlp = nn.Sequential(
            nn.Linear(hidden_size, inner), nn.GELU(approximate="tanh"), nn.Linear(inner, hidden_size)
        )
        self.modulation = nn.Sequential(nn.SiLU(), nn.Linear(hidden_size, 6 * hidden_size))

    def forward(
        self, x: torch.Tensor, condition: torch.Tensor, mask: torch.Tensor | None, sequences_per_sample: int = 1
    ) -> torch.Tensor:
        """x (B, T, H) with B = N x sequences_per_sample (consecutive sequences share a sample), condition (N, H),
        mask (B or 1, 1, 1, T) bool (True = attend) or None."""
        modulation = self.modulation(condition)  # once per sample, then shared by its sequences
        if sequences_per_sample > 1:
            modulation = modulation.repeat_interleave(sequences_per_sample, dim=0)
        shift1, scale1, gate1, shift2, scale2, gate2 = modulation.unsqueeze(1).chunk(6, dim=-1)
        x = x + gate1 * self._attention(_modulate(self.norm1(x), shift1, scale1), mask)
        return x + gate2 * self.mlp(_modulate(self.norm2(x), shift2, scale2))

    def _attention(self, x: torch.Tensor, mask: torch.Tensor | None) -> torch.Tensor:
        batch, length, width = x.shape
        q, k, v = self.qkv(x).view(batch, length, 3, self.num_heads, -1).permute(2, 0, 3, 1, 4)
        dropout = self.dropout if self.training else 0.0
        out = F.scaled_dot_product_attention(q, k, v, attn_mask=mask, dropout_p=dropout)
        return self.proj(out.transpose(1, 2).reshape(batch, length, width))


class GroupLinear(nn.Module):
    """A separate linear map per token group: (N, G, S, d_in) -> (N, G, S, d_out), one einsum for all groups."""

    def __init__(self, groups: int, d_in: int, d_out: int, zero: bool = False) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.empty(groups, d_in, d_out))
        self.bias = nn.Parameter(torch.zeros(groups, d_out))
        if zero:
            nn.init.zeros_(self.weight)
        else:  # nn.Linear's default init, per group
            bound = d_in**-0.5
            nn.init.uniform_(self.weight, -bound, bound)
            nn.init.uniform_(self.bias, -bound, bound)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.einsum("ngsi,gio->ngso", x, self.weight) + self.bias[:, None]


# The weight space's statistics stay float32 in a half-precision model: in bf16 an mLoRA weight's mean of about 1
# rounds by a third of its std (the frozen values of an asymmetric mask by as much), and every sample would be
# denormalised that far off.
FLOAT32_BUFFERS = ("weight_mean", "weight_std", "frozen_values")


class WeightSpaceDiT(ModelMixin, ConfigMixin):
    """Diffusion transformer over the weights of one representation spec; see the module docstring.

    Args:
        spec: The representation spec as a dict (`RepresentationSpec.to_dict()`): it fixes the tokens.
        tokenization: "auto" (rank tokens for the LoRA kinds, tensor tokens for the mlp kinds), "rank" or "tensor"
            (HyperDiffusion's tokenisation for any kind, the baseline).
        chunk_size: Largest tensor token (tensor tokenisation only).
        hidden_size: Token width.
        num_layers: DiT blocks of the backbone (across layers / across tensor tokens).
        num_layer_blocks: DiT blocks of the within-layer encoder, and as many in the mirror decoder (rank tokens).
        num_heads: Attention heads (must divide hidden_size).
        mlp_ratio: Width of each block's MLP relative to hidden_size.
        num_classes: 0 for an unconditional model; otherwise class labels 0..num_classes-1 condition it and the
            label `num_classes` means "no class" (classifier-free guidance).
        class_dropout_prob: Fraction of training labels replaced by "no class" (recorded here, applied in training).
        class_names: Optional names of the classes (the pipeline accepts them in place of indices).
        dropout: Attention dropout in training.
        encoding: How the training weights were encoded (the weight data set's settings): the pipeline encodes new
            data the same way, so it lands in this model's weight space.
        training: Where the model comes from (weight data set, steps, final loss, ...): metadata for its card.
    """

    _supports_gradient_checkpointing = False

    @register_to_config
    def __init__(
        self,
        spec: dict[str, Any],
        tokenization: str = "auto",
        chunk_size: int = DEFAULT_CHUNK_SIZE,
        hidden_size: int = 256,
        num_layers: int = 6,
        num_layer_blocks: int = 1,
        num_heads: int = 4,
        mlp_ratio: float = 4.0,
        num_classes: int = 0,
        class_dropout_prob: float = 0.1,
        class_names: list[str] | None = None,
        dropout: float = 0.0,
        encoding: dict[str, Any] | None = None,
        training: dict[str, Any] | None = None,
    ) -> None:
        super().__init__()
        self.spec = RepresentationSpec.from_dict(spec)
        for name, value in (("hidden_size", hidden_size), ("num_layers", num_layers), ("num_heads", num_heads)):
            check_int(value, name, minimum=1)
        if hidden_size % num_heads:
            raise ValueError(f"num_heads={num_heads} must divide hidden_size={hidden_size}.")
        check_int(num_classes, "num_classes", minimum=0)
        if class_names is not None and len(class_names) != num_classes:
            raise ValueError(f"Got {len(class_names)} class_names for num_classes={num_classes}.")
        if not 0.0 <= class_dropout_prob < 1.0:
            raise ValueError(f"class_dropout_prob must be in [0, 1), got {class_dropout_prob}.")

        self.tokens: TokenLayout = token_layout(self.spec, tokenization, chunk_size)
        groups, group_size, token_dim = self.tokens.num_groups, self.tokens.group_size, self.tokens.token_dim
        hierarchical = self.tokens.kind == "rank"
        self._padded = not bool(self.tokens.valid.all())  # layers of different ranks: mask the missing tokens

        self.token_in = GroupLinear(groups, token_dim, hidden_size)
        self.rank_embedding = nn.Parameter(torch.randn(group_size, hidden_size) * 0.02) if hierarchical else None
        self.group_embedding = nn.Parameter(torch.randn(groups, hidden_size) * 0.02)
        self.time_proj = Timesteps(hidden_size, flip_sin_to_cos=True, downscale_freq_shift=0)
        self.time_embedding = TimestepEmbedding(hidden_size, hidden_size)
        self.class_embedding = nn.Embedding(num_classes + 1, hidden_size) if num_classes else None
        if self.class_embedding is not None:
            nn.init.normal_(self.class_embedding.weight, std=0.02)

        def blocks(count: int) -> nn.ModuleList:
            return nn.ModuleList(DiTBlock(hidden_size, num_heads, mlp_ratio, dropout) for _ in range(count))

        self.layer_encoder = blocks(num_layer_blocks if hierarchical else 0)
        self.backbone = blocks(num_layers)
        self.layer_decoder = blocks(num_layer_blocks if hierarchical else 0)
        self.final_norm = nn.LayerNorm(hidden_size, elementwise_affine=False, eps=1e-6)
        self.final_modulation = nn.Sequential(nn.SiLU(), nn.Linear(hidden_size, 2 * hidden_size))
        self.token_out = GroupLinear(groups, hidden_size, token_dim, zero=True)
        for block in [*self.layer_encoder, *self.backbone, *self.layer_decoder]:
            nn.init.zeros_(block.modulation[1].weight)
            nn.init.zeros_(block.modulation[1].bias)
        nn.init.zeros_(self.final_modulation[1].weight)
        nn.init.zeros_(self.final_modulation[1].bias)

        # Normalisation of the training weights (saved with the model); identity until `set_normalization`.
        num_parameters = self.spec.num_parameters
        self.register_buffer("weight_mean", torch.zeros(num_parameters))
        self.register_buffer("weight_std", torch.ones(num_parameters))
        frozen, frozen_values = self.spec.frozen_entries()
        self.register_buffer("frozen_mask", frozen, persistent=False)  # derived from the spec
        self.register_buffer("frozen_values", frozen_values, persistent=False)

    def _apply(self, fn: Any, recurse: bool = True) -> WeightSpaceDiT:
        """nn.Module's `_apply` (what `.to`, `.half`, `.cuda` run), keeping the weight space's statistics
        (`FLOAT32_BUFFERS`) float32 on whatever device the model moves to."""
        kept = {name: self._buffers[name] for name in FLOAT32_BUFFERS}
        super()._apply(fn, recurse)
        for name, before in kept.items():
            moved = self._buffers[name]
            if moved.dtype != before.dtype:  # cast, not only moved: keep the float32 values on the new device
                self._buffers[name] = before.to(moved.device)
        return self

    @classmethod
    def from_pretrained(cls, *args: Any, **kwargs: Any) -> Any:
        """diffusers' `from_pretrained`, refusing a checkpoint that lacks a weight or holds one of another shape
        (`complete_from_pretrained`): without `weight_mean` and `weight_std` every sample would come out in the
        normalised space. The pipeline loads its transformer through this too.

        A `dtype` (or the older `torch_dtype`) is applied after loading in float32, through `_apply`, so the
        statistics stay float32 (diffusers would round them while loading).
        """
        dtype, torch_dtype = kwargs.pop("dtype", None), kwargs.pop("torch_dtype", None)
        loaded = complete_from_pretrained(super().from_pretrained, "transformer", args, kwargs)
        if dtype is not None or torch_dtype is not None:
            # nn.Module's `to`: ModelMixin's warns that any cast may round modules kept in float32, which `_apply` keeps
            nn.Module.to(loaded[0] if isinstance(loaded, tuple) else loaded, dtype or torch_dtype)
        return loaded

    # -- the weight space ---------------------------------------------------------------------------------------------
    @property
    def num_parameters(self) -> int:
        """Length of one weight vector (the diffusion sample's last dimension)."""
        return self.spec.num_parameters

    @property
    def null_class_label(self) -> int:
        """The label meaning "no class" (unconditional), for classifier-free guidance."""
        return self.config.num_classes

    @torch.no_grad()
    def set_normalization(self, vectors: torch.Tensor) -> None:
        """Set the per-coordinate mean and std from training weight vectors (N, num_parameters).

        Coordinates that never vary (the frozen entries of an asymmetric mask) get std 1, so they normalise to 0.
        """
        if vectors.dim() != 2 or vectors.shape[1] != self.num_parameters or vectors.shape[0] < 2:
            raise ValueError(
                f"Normalisation needs at least 2 weight vectors of {self.num_parameters} entries, got shape "
                f"{tuple(vectors.shape)}."
            )
        if not torch.isfinite(vectors).all():
            raise ValueError("The training weights contain NaN or infinite values.")
        vectors = vectors.to(torch.float64)
        mean, std = vectors.mean(dim=0), vectors.std(dim=0, unbiased=False)
        std = torch.where(std > 1e-12 * std.max().clamp_min(1e-30), std, torch.ones_like(std))
        self.weight_mean.copy_(mean.to(self.weight_mean.dtype))
        self.weight_std.copy_(std.to(self.weight_std.dtype))

    def normalize(self, vectors: torch.Tensor) -> torch.Tensor:
        """Weight vectors (N, num_parameters) -> the normalised space the model denoises in (float32 or wider)."""
        return (vectors - self.weight_mean) / self.weight_std

    def denormalize(self, vectors: torch.Tensor) -> torch.Tensor:
        """Normalised vectors -> weight vectors (float32 or wider), with the asymmetric mask's frozen entries set to
        their values."""
        weights = vectors * self.weight_std + self.weight_mean
        return torch.where(self.frozen_mask, self.frozen_values.to(weights.dtype), weights)

    # -- the network --------------------------------------------------------------------------------------------------
    def forward(
        self,
        sample: torch.Tensor,
        timestep: torch.Tensor | float | int,
        class_labels: torch.Tensor | None = None,
        return_dict: bool = True,
    ) -> WeightSpaceDiTOutput | tuple[torch.Tensor]:
        """Predict from noisy normalised weights `sample` (N, num_parameters) at `timestep` (scalar or (N,)).

        `class_labels` (N,) int64 in [0, num_classes] (num_classes = no class) for a class-conditional model; None
        means no class. An unconditional model takes none.
        """
        num_samples = sample.shape[0]
        condition = self._condition(sample, timestep, class_labels)
        hidden = self.token_in(self.tokens.tokenize(sample))  # (N, G, S, H)
        _, groups, group_size, width = hidden.shape
        valid = self.tokens.valid

        if self.rank_embedding is not None:
            hidden = hidden + self.rank_embedding
            hidden = self._within_layers(self.layer_encoder, hidden, condition)
        hidden = hidden + self.group_embedding[:, None]
        sequence = hidden.reshape(num_samples, groups * group_size, width)
        mask = valid.reshape(1, 1, 1, -1) if self._padded else None
        for block in self.backbone:
            sequence = block(sequence, condition, mask)
        hidden = sequence.reshape(num_samples, groups, group_size, width)
        if self.rank_embedding is not None:
            hidden = self._within_layers(self.layer_decoder, hidden, condition)

        shift, scale = self.final_modulation(condition).chunk(2, dim=-1)
        hidden = _modulate(self.final_norm(hidden), shift[:, None, None], scale[:, None, None])
        prediction = self.tokens.detokenize(self.token_out(hidden))
        if not return_dict:
            return (prediction,)
        return WeightSpaceDiTOutput(sample=prediction)

    def _within_layers(self, blocks: nn.ModuleList, hidden: torch.Tensor, condition: torch.Tensor) -> torch.Tensor:
        """Attention among the rank tokens of each layer: every layer is its own short sequence."""
        num_samples, groups, group_size, width = hidden.shape
        if not len(blocks):
            return hidden
        mask = self.tokens.valid.repeat(num_samples, 1)[:, None, None, :] if self._padded else None
        sequences = hidden.reshape(num_samples * groups, group_size, width)
        for block in blocks:
            sequences = block(sequences, condition, mask, sequences_per_sample=groups)
        return sequences.reshape(num_samples, groups, group_size, width)

    def _condition(
        self, sample: torch.Tensor, timestep: torch.Tensor | float | int, class_labels: torch.Tensor | None
    ) -> torch.Tensor:
        """The adaLN conditioning (N, H): timestep embedding plus class embedding."""
        num_samples = sample.shape[0]
        if sample.dim() != 2 or sample.shape[1] != self.num_parameters:
            raise ValueError(
                f"sample must be (N, {self.num_parameters}) weight vectors of the spec {self.spec.name}, got shape "
                f"{tuple(sample.shape)}."
            )
        timesteps = torch.as_tensor(timestep, device=sample.device)
        if timesteps.dim() == 0:
            timesteps = timesteps.expand(num_samples)
        if timesteps.shape != (num_samples,):
            raise ValueError(f"timestep must be a scalar or ({num_samples},), got shape {tuple(timesteps.shape)}.")
        time = self.time_proj(timesteps).to(sample.dtype)
        condition = self.time_embedding(time)
        if self.class_embedding is None:
            if class_labels is not None:
                raise ValueError("This model is unconditional (num_classes=0): pass class_labels=None.")
            return condition
        if class_labels is None:
            class_labels = torch.full((num_samples,), self.null_class_label, device=sample.device)
        class_labels = torch.as_tensor(class_labels, device=sample.device)
        if class_labels.shape != (num_samples,) or class_labels.dtype.is_floating_point:
            raise ValueError(f"class_labels must be ({num_samples},) integers, got {class_labels}.")
        if bool(((class_labels < 0) | (class_labels > self.null_class_label)).any()):
            raise ValueError(
                f"class_labels must be in [0, {self.config.num_classes - 1}] (or {self.null_class_label} for no "
                f"class), got {class_labels.tolist()}."
            )
        return condition + self.class_embedding(class_labels)


__all__ = ["DiTBlock", "WeightSpaceDiT", "WeightSpaceDiTOutput"]
