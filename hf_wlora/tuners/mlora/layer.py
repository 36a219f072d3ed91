"""mLoRA layers: the math of multiplicative (W ⊙ M) and additive (W + ΔW) low-rank adaptation.

Every supported layer views its weight as a 2-D matrix d_out x d_in (a convolution's weight as out x (in/groups *
kernel size), an embedding's as num_embeddings x embedding_dim), so one rule covers all of them:

    P = (alpha / r) B A_eff,   A_eff = A with its frozen (masked) entries replaced by their fixed values,
    W' = W ⊙ P (multiplicative)   or   W' = W + P (additive).

The forward pass and the merge compute W' with the same function, so a merged layer gives bit-identical outputs to
the unmerged one (Linear and Conv), and un-merging restores a saved copy of the original weight instead of
dividing by P, which can be near zero.
"""

from __future__ import annotations

import math
import warnings
from typing import Any

import torch
import torch.nn.functional as F
from peft.tuners._buffer_dict import BufferDict
from peft.tuners.tuners_utils import BaseTunerLayer, check_adapters_to_merge
from torch import nn

from ...spec import asymmetric_mask, check_rank, frozen_values
from .config import MLoraConfig

SUPPORTED_LAYER_TYPES: tuple[type[nn.Module], ...] = (nn.Linear, nn.Conv1d, nn.Conv2d, nn.Conv3d, nn.Embedding)

# std of the random, non-identity init (init_weights=False) that tests use to make adapters matter
_TEST_INIT_STD = 0.3
# the name that selects the base model (no adapter) for a sub-batch in mixed-adapter inference, as in PEFT
BASE_ADAPTER_NAME = "__base__"


class MLoraLayer(BaseTunerLayer):
    """State and math shared by all mLoRA layers; subclasses only say how to apply an adapted weight."""

    adapter_layer_names: tuple[str, ...] = ("mlora_A", "mlora_B")
    other_param_names: tuple[str, ...] = ("r", "scaling", "multiplicative", "mlora_mask", "mlora_frozen")

    def __init__(self, base_layer: nn.Module, layer_key: str) -> None:
        self.base_layer = base_layer
        # The module's name in the base model: it seeds this layer's mask, and the representation spec names the
        # layer by it, so the same layer gets the same mask in every model, process and library version.
        self.layer_key = layer_key
        self.r: dict[str, int] = {}
        self.scaling: dict[str, float] = {}
        self.multiplicative: dict[str, bool] = {}
        self.mlora_A = nn.ParameterDict({})
        self.mlora_B = nn.ParameterDict({})
        # Masks and frozen values are a pure function of the config and layer_key, so they are not saved.
        self.mlora_mask = BufferDict({}, persistent=False)
        self.mlora_frozen = BufferDict({}, persistent=False)
        self._disable_adapters = False
        self.merged_adapters: list[str] = []
        # A plain attribute, not a buffer: it must never be saved as adapter state.
        self._weight_before_merge: torch.Tensor | None = None
        weight = self.get_base_layer().weight
        self.out_features = weight.shape[0]
        self.in_features = weight[0].numel()

    @property
    def _available_adapters(self) -> set[str]:
        return set(self.mlora_A)

    def update_layer(self, adapter_name: str, config: MLoraConfig, r: int) -> None:
        """Add the adapter `adapter_name` with rank `r` to this layer and initialise it."""
        check_rank(self.layer_key, r, self.out_features, self.in_features)
        self.r[adapter_name] = r
        self.scaling[adapter_name] = config.alpha / r
        self.multiplicative[adapter_name] = config.multiplicative
        self.mlora_A[adapter_name] = nn.Parameter(torch.empty(r, self.in_features))
        self.mlora_B[adapter_name] = nn.Parameter(torch.empty(self.out_features, r))
        if config.asymmetric_mask:
            mask_args = (config.mask_seed, self.layer_key)
            self.mlora_mask[adapter_name] = asymmetric_mask(
                r, self.in_features, config.mask_ratio, *mask_args, keep_every_column=config.multiplicative
            )
            self.mlora_frozen[adapter_name] = frozen_values(
                r, self.in_features, config.multiplicative, config.kappa, *mask_args
            )
        self.reset_parameters(adapter_name, config)
        self._move_adapter_to_device_of_base_layer(adapter_name)
        self.set_adapter(self.active_adapters)

    @torch.no_grad()
    def reset_parameters(self, adapter_name: str, config: MLoraConfig) -> None:
        A, B = self.mlora_A[adapter_name], self.mlora_B[adapter_name]
        if config.multiplicative:
            std = config.init_std if config.init_weights else _TEST_INIT_STD
            # Entries ~ N(1, std^2) scaled by alpha^-1/2 give (alpha / r) B A ≈ 1 for any alpha.
            A.normal_(1.0, std).mul_(config.alpha**-0.5)
            B.normal_(1.0, std).mul_(config.alpha**-0.5)
            if adapter_name in self.mlora_mask:
                # Column j of M sums only over its trainable rows: rescale so it still sums to ≈ r, i.e. M ≈ 1.
                trainable_rows = (~self.mlora_mask[adapter_name]).sum(dim=0)
                A.mul_(self.r[adapter_name] / trainable_rows.to(A.dtype))
        else:
            nn.init.kaiming_uniform_(A, a=math.sqrt(5))
            if config.init_weights:
                B.zero_()
            else:
                B.normal_(0.0, _TEST_INIT_STD)
        # Store the frozen values in A itself too, so a saved factor is exactly the one the layer uses.
        A.copy_(self.effective_A(adapter_name))

    @torch.no_grad()
    def init_distribution(self, adapter_name: str, config: MLoraConfig) -> dict[str, tuple[torch.Tensor, torch.Tensor]]:
        """Mean and std, entry by entry, of the distribution `reset_parameters` draws A and B from: {"A": (mean,
        std), "B": (mean, std)}, so the random part of an initialisation is (factor - mean) / std (std 0 where an
        entry is not random). Frozen mask entries are not drawn; their values stay whatever this says."""
        A, B = self.mlora_A[adapter_name], self.mlora_B[adapter_name]
        if config.multiplicative:
            std = config.init_std if config.init_weights else _TEST_INIT_STD
            scale_A, scale_B = torch.full_like(A, config.alpha**-0.5), torch.full_like(B, config.alpha**-0.5)
            if adapter_name in self.mlora_mask:
                trainable_rows = (~self.mlora_mask[adapter_name]).sum(dim=0)
                scale_A = scale_A * (self.r[adapter_name] / trainable_rows.to(A.dtype))
            return {"A": (scale_A, std * scale_A), "B": (scale_B, std * scale_B)}
        # kaiming_uniform_(a=sqrt(5)) is uniform on +-1/sqrt(fan_in): std 1/sqrt(3 fan_in)
        fan_in = A[0].numel()
        uniform_std = torch.full_like(A, (3 * fan_in) ** -0.5)
        B_std = torch.zeros_like(B) if config.init_weights else torch.full_like(B, _TEST_INIT_STD)
        return {"A": (torch.zeros_like(A), uniform_std), "B": (torch.zeros_like(B), B_std)}

    def effective_A(self, adapter_name: str) -> torch.Tensor:
        """A with its frozen entries forced to their fixed values (they also get zero gradient this way)."""
        A = self.mlora_A[adapter_name]
        if adapter_name not in self.mlora_mask:
            return A
        return torch.where(self.mlora_mask[adapter_name], self.mlora_frozen[adapter_name].to(A.dtype), A)

    def factor_product(self, adapter_name: str) -> torch.Tensor:
        """P = (alpha / r) B A_eff as a d_out x d_in matrix."""
        return (self.mlora_B[adapter_name] @ self.effective_A(adapter_name)) * self.scaling[adapter_name]

    def _adapt(self, weight: torch.Tensor, adapter_name: str, product: torch.Tensor | None = None) -> torch.Tensor:
        """Apply one adapter to `weight` (or to rows of it, given their rows of P)."""
        if product is None:
            product = self.factor_product(adapter_name)
            # Keep any leading instance dimension of instance-stacked factors (see functional.batched_forward).
            product = product.reshape(*product.shape[:-2], *weight.shape)
        product = product.to(weight.dtype)
        return weight * product if self.multiplicative[adapter_name] else weight + product

    def adapted_weight(self, adapter_names: list[str]) -> torch.Tensor:
        """The base weight with the given adapters applied in order (W ⊙ M1 ⊙ M2 ..., or W + ΔW1 + ...)."""
        weight = self.get_base_layer().weight
        for adapter_name in adapter_names:
            weight = self._adapt(weight, adapter_name)
        return weight

    # -- forward ---------------------------------------------------------------------------------------------------
    def forward_adapted(self, x: torch.Tensor, adapter_names: list[str]) -> torch.Tensor:
        """The layer's output with the given adapters applied (subclasses implement it for their layer type)."""
        raise NotImplementedError

    def forward(self, x: torch.Tensor, *args: Any, **kwargs: Any) -> torch.Tensor:
        adapter_names = kwargs.pop("adapter_names", None)
        if self.disable_adapters:
            if self.merged:
                self.unmerge()
            return self.base_layer(x, *args, **kwargs)
        if adapter_names is not None:
            if self.merged:
                raise ValueError(
                    "Cannot pass `adapter_names` while adapters are merged into the base weights; call "
                    "`unmerge_adapter()` first."
                )
            return self._mixed_batch_forward(x, adapter_names)
        active = [name for name in self.active_adapters if name in self.mlora_A]
        if self.merged or not active:
            return self.base_layer(x, *args, **kwargs)
        return self.forward_adapted(x, active)

    def _mixed_batch_forward(self, x: torch.Tensor, adapter_names: list[str]) -> torch.Tensor:
        """Each sample of the batch goes through its own adapter (or the base model for "__base__")."""
        if len(adapter_names) != len(x):
            raise ValueError(
                f"`adapter_names` has {len(adapter_names)} entries but the batch has {len(x)} samples; pass one "
                "adapter name per sample."
            )
        groups: dict[str, list[int]] = {}
        for index, name in enumerate(adapter_names):
            groups.setdefault(name, []).append(index)
        output: torch.Tensor | None = None
        for name, indices in groups.items():
            index = torch.tensor(indices, device=x.device)
            sub_batch = x[index]
            if name == BASE_ADAPTER_NAME or name not in self.mlora_A:
                result = self.base_layer(sub_batch)
            else:
                result = self.forward_adapted(sub_batch, [name])
            if output is None:
                output = result.new_empty((len(x), *result.shape[1:]))
            output[index] = result
        assert output is not None  # a batch has at least one sample, checked above
        return output

    # -- merging ---------------------------------------------------------------------------------------------------
    @torch.no_grad()
    def merge(self, safe_merge: bool = False, adapter_names: list[str] | None = None) -> None:
        """Fold adapters into the base weight (W <- W ⊙ M or W + ΔW); `unmerge` restores W bit for bit."""
        adapter_names = [name for name in check_adapters_to_merge(self, adapter_names) if name in self.mlora_A]
        if not adapter_names:
            return
        weight = self.get_base_layer().weight
        merged = weight.data
        for adapter_name in adapter_names:
            merged = self._adapt(merged, adapter_name)
        if safe_merge and not torch.isfinite(merged).all():
            raise ValueError(
                f"Merging adapter(s) {adapter_names} into layer {self.layer_key!r} gives NaN or infinite weights; "
                "the adapter seems broken. Nothing was merged."
            )
        if self._weight_before_merge is None:
            self._weight_before_merge = weight.data.clone()
        weight.data.copy_(merged)
        self.merged_adapters.extend(adapter_names)

    @torch.no_grad()
    def unmerge(self) -> None:
        """Restore the exact weight the layer had before its first merge."""
        if not self.merged:
            warnings.warn("Already unmerged. Nothing to do.", stacklevel=2)
            return
        self.get_base_layer().weight.data.copy_(self._weight_before_merge)
        self._weight_before_merge = None
        self.merged_adapters.clear()

    def __repr__(self) -> str:
        return "mlora." + super().__repr__()


class _MLoraModule(nn.Module, MLoraLayer):
    def __init__(self, base_layer: nn.Module, adapter_name: str, config: MLoraConfig, r: int, layer_key: str) -> None:
        super().__init__()
        MLoraLayer.__init__(self, base_layer, layer_key)
        self._active_adapter = adapter_name
        self.update_layer(adapter_name, config, r)

    # nn.Module's placeholder forward comes first in the MRO, so point at the shared one explicitly.
    forward = MLoraLayer.forward


class Linear(_MLoraModule):
    """mLoRA on `nn.Linear`."""

    def forward_adapted(self, x: torch.Tensor, adapter_names: list[str]) -> torch.Tensor:
        weight, bias = self.adapted_weight(adapter_names), self.get_base_layer().bias
        if weight.dim() == 2:
            return F.linear(x, weight, bias)
        # Instance-stacked factors give one weight per instance, (N, d_out, d_in), and x holds the N instances along
        # its first dimension: one batched matmul with the bias fused in.
        flat = x.reshape(x.shape[0], -1, x.shape[-1])
        weight_t = weight.transpose(1, 2)
        out = torch.bmm(flat, weight_t) if bias is None else torch.baddbmm(bias.to(flat.dtype), flat, weight_t)
        return out.reshape(*x.shape[:-1], out.shape[-1])


class Conv(_MLoraModule):
    """mLoRA on `nn.Conv1d`, `nn.Conv2d` and `nn.Conv3d` (M has the kernel's shape)."""

    def forward_adapted(self, x: torch.Tensor, adapter_names: list[str]) -> torch.Tensor:
        base_layer = self.get_base_layer()
        return base_layer._conv_forward(x, self.adapted_weight(adapter_names), base_layer.bias)


class Embedding(_MLoraModule):
    """mLoRA on `nn.Embedding`: M has the table's shape; only the looked-up rows of it are ever computed."""

    def __init__(self, base_layer: nn.Module, adapter_name: str, config: MLoraConfig, r: int, layer_key: str) -> None:
        if base_layer.max_norm is not None:
            raise ValueError(
                f"Layer {layer_key!r} is an nn.Embedding with max_norm={base_layer.max_norm}, which renormalises the "
                "frozen table in place on every lookup; mLoRA does not support it. Leave this layer out of "
                "target_modules."
            )
        super().__init__(base_layer, adapter_name, config, r, layer_key)

    def forward_adapted(self, x: torch.Tensor, adapter_names: list[str]) -> torch.Tensor:
        base_layer = self.get_base_layer()
        rows = F.embedding(x, base_layer.weight, base_layer.padding_idx)
        for adapter_name in adapter_names:
            # Rows of P = (alpha / r) B A: look up the rows of B, then multiply by A (never the whole table).
            b_rows = F.embedding(x, self.mlora_B[adapter_name])
            product = (b_rows @ self.effective_A(adapter_name)) * self.scaling[adapter_name]
            rows = self._adapt(rows, adapter_name, product)
        return rows


def create_mlora_module(target: nn.Module, adapter_name: str, config: MLoraConfig, r: int, layer_key: str) -> nn.Module:
    """Wrap `target` in the mLoRA layer for its type, or raise a ValueError naming the supported types."""
    base_layer = target.get_base_layer() if isinstance(target, BaseTunerLayer) else target
    if isinstance(base_layer, nn.Linear):
        layer_class: type[_MLoraModule] = Linear
    elif isinstance(base_layer, (nn.Conv1d, nn.Conv2d, nn.Conv3d)):
        layer_class = Conv
    elif isinstance(base_layer, nn.Embedding):
        layer_class = Embedding
    else:
        supported = ", ".join(f"nn.{layer_type.__name__}" for layer_type in SUPPORTED_LAYER_TYPES)
        raise ValueError(
            f"Target module {layer_key!r} is a {type(base_layer).__name__}, which mLoRA does not support. Supported "
            f"layer types: {supported}. Remove it from target_modules (or add it to exclude_modules)."
        )
    return layer_class(target, adapter_name, config, r, layer_key)
