"""mLoRA layers: the math of multiplicative (W ⊙ M) and additive (W + ΔW) low-rank adaptation.

Every supported layer views its weight as a 2-D matrix d_out x d_in (a convolution's weight as out x (in/groups *
kernel size), an embedding's as num_embeddings x embedding_dim, transformers' `Conv1D` weight, stored in x out, as
its transpose), so one rule covers all of them:

    P = (alpha / r) B A_eff,   A_eff = A with its frozen (masked) entries replaced by their fixed values,
    W' = W ⊙ P (multiplicative)   or   W' = W + P (additive).

Multiplicative adapters need W' itself. Additive adapters applied last are computed as B (A x) in the unmerged
forward, as PEFT's LoRA does, so a large layer never materialises its d_out x d_in update. Merging computes W' with
the same function as the multiplicative forward, and un-merging restores a saved copy of the original weight instead
of dividing by P, which can be near zero.
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
from transformers.pytorch_utils import Conv1D

from ...checks import check_int
from ...spec import asymmetric_mask, frozen_values
from .config import MLoraConfig
from .stacked import stacked_multiplicative_linear

SUPPORTED_LAYER_TYPES: tuple[type[nn.Module], ...] = (
    nn.Linear,
    Conv1D,
    nn.Conv1d,
    nn.Conv2d,
    nn.Conv3d,
    nn.Embedding,
)

# std of the random, non-identity init (init_weights=False) that tests use to make adapters matter
_TEST_INIT_STD = 0.3
# the name that selects the base model (no adapter) for a sub-batch in mixed-adapter inference, as in PEFT
BASE_ADAPTER_NAME = "__base__"


def weight_matrix_shape(layer: nn.Module) -> tuple[int, int]:
    """(d_out, d_in) of the 2-D view of a supported layer's weight (see the module docstring)."""
    weight = layer.weight
    if isinstance(layer, Conv1D):
        return weight.shape[1], weight.shape[0]
    return weight.shape[0], weight[0].numel()


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
        self.out_features, self.in_features = weight_matrix_shape(self.get_base_layer())
        self.register_state_dict_post_hook(MLoraLayer._save_effective_A)  # type: ignore[attr-defined]

    def _save_effective_A(self, state_dict: dict[str, Any], prefix: str, local_metadata: dict[str, Any]) -> None:
        """Save A with its frozen entries at their fixed values, as the layer uses it.

        The raw parameter can drift there (weight decay moves entries that get no gradient), and a saved A that
        breaks its mask is refused when loading.
        """
        for adapter_name in self.mlora_mask:
            key = f"{prefix}mlora_A.{adapter_name}"
            if key in state_dict and not state_dict[key].is_meta:  # a meta factor (being loaded) holds no values
                effective = self.effective_A(adapter_name).detach()
                if not torch.equal(effective, state_dict[key]):
                    state_dict[key] = effective

    @property
    def _available_adapters(self) -> set[str]:
        return set(self.mlora_A)

    def update_layer(self, adapter_name: str, config: MLoraConfig, r: int) -> None:
        """Add the adapter `adapter_name` with rank `r` (any integer >= 1) to this layer and initialise it."""
        check_int(r, f"The rank r of layer {self.layer_key!r}", minimum=1)
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
        """Draw the factors as `config.init_weights` says (see MLoraConfig)."""
        A, B = self.mlora_A[adapter_name], self.mlora_B[adapter_name]
        if A.is_meta:
            # low_cpu_mem_usage=True: the factors are placeholders that the checkpoint's values replace
            return
        if config.multiplicative:
            mean_A, std_A, mean_B, std_B = self._multiplicative_init_moments(adapter_name, config)
            noise = torch.randn_like(A)
            if config.init_weights is True:
                # Centre the noise over each column's trainable rows: the column sums of A are then those of its
                # mean, and with B constant every entry of M is exactly 1 up to float rounding.
                trainable = self._trainable_entries(adapter_name)
                noise = torch.where(trainable, noise, 0.0)
                noise -= trainable * (noise.sum(dim=0) / trainable.sum(dim=0))
            A.copy_(mean_A).add_(std_A * noise)
            B.copy_(mean_B).add_(std_B * torch.randn_like(B))
        else:
            distribution, std = self._additive_A_init(adapter_name, config)
            if distribution == "normal":
                A.normal_(0.0, std)
            else:
                A.uniform_(-math.sqrt(3) * std, math.sqrt(3) * std)
            if config.init_weights is False:
                B.normal_(0.0, _TEST_INIT_STD)
            else:
                B.zero_()
        # Store the frozen values in A itself too, so a saved factor is exactly the one the layer uses.
        A.copy_(self.effective_A(adapter_name))

    def _multiplicative_init_moments(
        self, adapter_name: str, config: MLoraConfig
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        """(mean of A, std of A's noise, mean of B, std of B's noise) of a multiplicative init, entry by entry.

        Entries ~ alpha^-1/2 (1 + std * noise) give (alpha / r) B A ≈ 1 for any alpha. Column j of M sums only over
        its trainable rows, so column j of A is scaled by r over their number and M stays ≈ 1 under the mask. The
        identity init keeps B exactly constant (std 0) and puts all the noise on A.
        """
        A, B = self.mlora_A[adapter_name], self.mlora_B[adapter_name]
        std = _TEST_INIT_STD if config.init_weights is False else config.init_std
        mean_A, mean_B = torch.full_like(A, config.alpha**-0.5), torch.full_like(B, config.alpha**-0.5)
        trainable_rows = self._trainable_entries(adapter_name).sum(dim=0)
        mean_A = mean_A * (self.r[adapter_name] / trainable_rows.to(A.dtype))
        std_B = torch.zeros_like(B) if config.init_weights is True else std * mean_B
        return mean_A, std * mean_A, mean_B, std_B

    @torch.no_grad()
    def init_distribution(self, adapter_name: str, config: MLoraConfig) -> dict[str, tuple[torch.Tensor, torch.Tensor]]:
        """Mean and std, entry by entry, of the distribution `reset_parameters` draws A and B from: {"A": (mean,
        std), "B": (mean, std)}, so the random part of an initialisation is (factor - mean) / std (std 0 where an
        entry is not random). Frozen mask entries are not drawn; their values stay whatever this says. (The identity
        init's noise on A is centred per column, so its entries are not independent; the study of the weight space
        uses the "gaussian" init, whose entries are.)"""
        A, B = self.mlora_A[adapter_name], self.mlora_B[adapter_name]
        if config.multiplicative:
            mean_A, std_A, mean_B, std_B = self._multiplicative_init_moments(adapter_name, config)
            if config.init_weights is True:
                # centring over a column's t trainable rows leaves each entry a variance (t - 1) / t of the draw's
                trainable_rows = self._trainable_entries(adapter_name).sum(dim=0).to(A.dtype)
                std_A = std_A * ((trainable_rows - 1) / trainable_rows).sqrt()
            return {"A": (mean_A, std_A), "B": (mean_B, std_B)}
        A_std = torch.full_like(A, self._additive_A_init(adapter_name, config)[1])
        B_std = torch.full_like(B, _TEST_INIT_STD) if config.init_weights is False else torch.zeros_like(B)
        return {"A": (torch.zeros_like(A), A_std), "B": (torch.zeros_like(B), B_std)}

    def _additive_A_init(self, adapter_name: str, config: MLoraConfig) -> tuple[str, float]:
        """("uniform" or "normal", std) of A's additive init: PEFT's LoRA Kaiming-uniform (a = sqrt 5, i.e. uniform
        on +-1/sqrt(d_in)), or N(0, 1 / r) for "gaussian"."""
        if config.init_weights == "gaussian":
            return "normal", 1.0 / self.r[adapter_name]
        return "uniform", (3 * self.in_features) ** -0.5

    def _trainable_entries(self, adapter_name: str) -> torch.Tensor:
        """Where A is trainable: a (r, d_in) bool tensor, False at the frozen entries of the mask."""
        if adapter_name in self.mlora_mask:
            return ~self.mlora_mask[adapter_name]
        return torch.ones_like(self.mlora_A[adapter_name], dtype=torch.bool)

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
            product = self._as_weight_layout(self.factor_product(adapter_name))
        product = product.to(weight.dtype)
        return weight * product if self.multiplicative[adapter_name] else weight + product

    def _as_weight_layout(self, product: torch.Tensor) -> torch.Tensor:
        """P, (..., d_out, d_in), in the base weight's layout; any leading instance dimension of instance-stacked
        factors is kept (see functional.batched_forward)."""
        return product.reshape(*product.shape[:-2], *self.get_base_layer().weight.shape)

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

    def _split_adapters(self, adapter_names: list[str]) -> tuple[list[str], list[str]]:
        """(adapters to fold into the weight, the additive adapters after the last multiplicative one).

        The second group adds (alpha / r) B (A x) to the output, which never forms a d_out x d_in matrix; an additive
        adapter applied before a multiplicative one is scaled by its M, so it must be folded in.
        """
        split = len(adapter_names)
        while split > 0 and not self.multiplicative[adapter_names[split - 1]]:
            split -= 1
        return adapter_names[:split], adapter_names[split:]

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

    def _as_matrix(self, weight: torch.Tensor) -> torch.Tensor:
        """The base weight's layout as (..., d_out, d_in), which is nn.Linear's own."""
        return weight

    def forward_adapted(self, x: torch.Tensor, adapter_names: list[str]) -> torch.Tensor:
        if self._is_stacked_multiplicative(x, adapter_names):
            (adapter_name,) = adapter_names
            base_layer = self.get_base_layer()
            masked = adapter_name in self.mlora_mask
            return stacked_multiplicative_linear(
                x,
                self.mlora_A[adapter_name],
                self.mlora_B[adapter_name],
                self._as_matrix(base_layer.weight),
                base_layer.bias,
                self.scaling[adapter_name],
                *((self.mlora_mask[adapter_name], self.mlora_frozen[adapter_name]) if masked else (None, None)),
            )
        folded, low_rank = self._split_adapters(adapter_names)
        out = _linear(x, self._as_matrix(self.adapted_weight(folded)), self.get_base_layer().bias)
        for adapter_name in low_rank:
            # (alpha / r) B (A x), in the adapter's dtype (fp32 beside an fp16 base, as PEFT autocasts)
            A, B = self.effective_A(adapter_name), self.mlora_B[adapter_name]
            update = _linear(_linear(x.to(A.dtype), A), B) * self.scaling[adapter_name]
            out = out + update.to(out.dtype)
        return out

    def _is_stacked_multiplicative(self, x: torch.Tensor, adapter_names: list[str]) -> bool:
        """Whether this call is one multiplicative adapter with instance-stacked factors (the batched fitting path)
        on a frozen base layer, which `stacked_multiplicative_linear` computes in one autograd function."""
        if len(adapter_names) != 1 or not self.multiplicative[adapter_names[0]]:
            return False
        A, B = self.mlora_A[adapter_names[0]], self.mlora_B[adapter_names[0]]
        base_layer = self.get_base_layer()
        constants = [base_layer.weight] if base_layer.bias is None else [base_layer.weight, base_layer.bias]
        return (
            A.dim() == 3
            and x.dim() >= 2
            and x.shape[0] == A.shape[0]
            and not any(tensor.requires_grad for tensor in constants)
            and all(tensor.dtype == x.dtype for tensor in (A, B, *constants))
        )


def _linear(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None = None) -> torch.Tensor:
    """F.linear, or for instance-stacked weights (N, d_out, d_in), with x holding the N instances along its first
    dimension, one batched matmul with the bias fused in."""
    if weight.dim() == 2:
        return F.linear(x, weight, bias)
    flat = x.reshape(x.shape[0], -1, x.shape[-1])
    weight_t = weight.transpose(1, 2)
    out = torch.bmm(flat, weight_t) if bias is None else torch.baddbmm(bias.to(flat.dtype), flat, weight_t)
    return out.reshape(*x.shape[:-1], out.shape[-1])


class TransformersConv1D(Linear):
    """mLoRA on transformers' `Conv1D` (GPT-2 and relatives): a linear layer whose weight is stored in x out."""

    def _as_weight_layout(self, product: torch.Tensor) -> torch.Tensor:
        return product.transpose(-1, -2)

    def _as_matrix(self, weight: torch.Tensor) -> torch.Tensor:
        return weight.transpose(-1, -2)


class Conv(_MLoraModule):
    """mLoRA on `nn.Conv1d`, `nn.Conv2d` and `nn.Conv3d` (M has the kernel's shape)."""

    def forward_adapted(self, x: torch.Tensor, adapter_names: list[str]) -> torch.Tensor:
        # Additive adapters are folded in too: a kernel is small next to the convolution over every position, and
        # the merged layer then gives bit-identical outputs.
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

    def _additive_A_init(self, adapter_name: str, config: MLoraConfig) -> tuple[str, float]:
        # B is the factor that is looked up (zero at init) and A the shared one: N(0, 1), as PEFT's LoRA initialises
        # its shared embedding factor, so that A moves within a few steps once B does.
        return "normal", 1.0

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
    elif isinstance(base_layer, Conv1D):
        layer_class = TransformersConv1D
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
