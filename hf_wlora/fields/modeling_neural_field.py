"""`NeuralFieldModel`: the stage-1 neural field as a transformers `PreTrainedModel`.

Coordinates in, values out. The modulated form (stage 1) is driven by a per-instance latent z; `bake()` folds the
mean latent z = 0 into plain `nn.Linear` layers and returns the base field that stages 2 and 3 adapt.

Layer names (stable, relied on by adapters and saved checkpoints):

    encoding.frequencies            Fourier frequency buffer (saved)
    mapping.layers.{k}              mapping network (modulated form only)
    input_proj.{modulated|linear}   Fourier features -> hidden_size
    trunk.{i}.{modulated|linear}    residual hidden_size -> hidden_size layers, i < num_layers
    head.{modulated|linear}         hidden_size -> out_dim (no demodulation, like StyleGAN2's toRGB)
"""

from __future__ import annotations

import copy
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor, nn
from transformers import PreTrainedModel
from transformers import initialization as init
from transformers.utils import ModelOutput

from ..checks import complete_from_pretrained
from .configuration_neural_field import NeuralFieldConfig
from .layers import (
    FourierFeatures,
    LinearBlock,
    MappingNetwork,
    ModulatedBlock,
    ModulatedLinear,
    apply_output_activation,
)

# Full-name regex for PEFT's `target_modules` (a str is matched with re.fullmatch against each module name):
# the same layers as `NeuralFieldModel.adapter_target_modules()`, for any depth.
ADAPTER_TARGET_REGEX = r"(.*\.)?(input_proj|trunk\.\d+)\.linear"


@dataclass
class NeuralFieldOutput(ModelOutput):
    """Output of `NeuralFieldModel`.

    Args:
        values (`torch.FloatTensor` of shape `(..., P, out_dim)`): field values at the P coordinates (RGB in
            [0, 1] for images, signed distance for shapes), with the broadcast instance dims of coords and latents.
    """

    values: torch.FloatTensor | None = None


class NeuralFieldModel(PreTrainedModel):
    """Fourier features -> modulated (or baked plain) residual MLP -> output head.

    Call as `model(coords, latents=None, return_dict=True)`:

    * `coords` (..., P, coord_dim), in [-1, 1] for images (see `hf_wlora.fields.coordinates`);
    * `latents` (..., latent_dim) or None. Leading dims of `latents` and of `coords[..., :-2]` broadcast, so
      coords (P, d) with latents (N, latent_dim) gives (N, P, out_dim). `None` means the mean latent z = 0.
      A baked model has no latent and ignores `latents`.
    """

    config_class = NeuralFieldConfig
    base_model_prefix = "neural_field"
    main_input_name = "coords"

    def __init__(self, config: NeuralFieldConfig) -> None:
        super().__init__(config)
        config.check()  # the config may have been edited after construction
        self.encoding = FourierFeatures(
            config.coord_dim,
            config.num_fourier_features,
            kind=config.fourier_type,
            scale=config.fourier_scale,
            include_input=config.fourier_include_input,
            seed=config.fourier_seed,
        )
        width, act = config.hidden_size, config.activation
        if config.baked:
            self.input_proj = LinearBlock(self.encoding.out_dim, width, act, residual=False)
            self.trunk = nn.ModuleList(
                LinearBlock(width, width, act, config.residual) for _ in range(config.num_layers)
            )
            self.head = LinearBlock(width, config.out_dim, None, residual=False)
        else:
            style, demod = config.style_dim, config.demodulate
            self.mapping = MappingNetwork(config.latent_dim, style, config.mapping_layers)
            self.input_proj = ModulatedBlock(self.encoding.out_dim, width, style, act, demod, residual=False)
            self.trunk = nn.ModuleList(
                ModulatedBlock(width, width, style, act, demod, config.residual) for _ in range(config.num_layers)
            )
            # no demodulation on the head: it sets the output scale (StyleGAN2's toRGB does the same)
            self.head = ModulatedBlock(width, config.out_dim, style, None, demodulate=False, residual=False)
        self.post_init()

    @classmethod
    def from_pretrained(cls, *args: Any, **kwargs: Any) -> Any:
        """transformers' `from_pretrained`, refusing a checkpoint that lacks a weight or holds one of another shape.

        transformers would initialise such weights afresh and only log a report; a base field with a random layer
        would then encode and decode every instance wrongly without a word (`complete_from_pretrained`).
        """
        return complete_from_pretrained(super().from_pretrained, "field", args, kwargs)

    @torch.no_grad()
    def _init_weights(self, module: nn.Module) -> None:
        # transformers calls this for every module that owns parameters or buffers (children before parents) on a
        # fresh model, and for the missing ones after loading; torch.nn.init functions are guarded meanwhile so
        # that loaded tensors are kept. Each layer's own reset_parameters is the single source of its init:
        # nn.Linear (baked layers) PyTorch's default, ModulatedLinear and MappingLinear their documented schemes.
        if isinstance(module, FourierFeatures):
            init.copy_(module.frequencies, module.make_frequencies())
        elif isinstance(module, (ModulatedLinear, nn.Linear)):
            module.reset_parameters()

    def forward(
        self, coords: Tensor, latents: Tensor | None = None, return_dict: bool = True
    ) -> NeuralFieldOutput | tuple[Tensor]:
        if coords.shape[-1] != self.config.coord_dim:
            raise ValueError(f"coords must end in {self.config.coord_dim} coordinates, got shape {tuple(coords.shape)}")
        freqs = self.encoding.frequencies
        h = self.encoding(coords.to(dtype=freqs.dtype))
        if self.config.baked:
            h = self.input_proj(h)
            for block in self.trunk:
                h = block(h)
            values = self.head(h)
        else:
            if latents is None:
                latents = freqs.new_zeros(self.config.latent_dim)  # the mean latent
            elif latents.shape[-1] != self.config.latent_dim:
                raise ValueError(f"latents must end in latent_dim={self.config.latent_dim}, got {tuple(latents.shape)}")
            w = self.mapping(latents.to(dtype=freqs.dtype))
            h = self.input_proj(h, w)
            for block in self.trunk:
                h = block(h, w)
            values = self.head(h, w)
        values = apply_output_activation(values, self.config.output_activation)
        if not return_dict:
            return (values,)
        return NeuralFieldOutput(values=values)

    @torch.no_grad()
    def bake(self) -> NeuralFieldModel:
        """A NEW baked model (`config.baked=True`) equal to this one at the mean latent z = 0.

        Each modulated layer W, b with style s = affine(mapping(0)) becomes a plain linear layer with weight
        W_ij * s_j (divided row-wise by sqrt(sum_j (W_ij s_j)^2 + eps) where demodulated) and the same bias b.
        The folding runs in float64 and is cast to this model's dtype. Baking a baked model returns a copy.
        """
        if self.config.baked:
            return copy.deepcopy(self)
        config = copy.deepcopy(self.config)
        config.baked = True
        device, dtype = self.encoding.frequencies.device, self.input_proj.modulated.weight.dtype
        with init.no_init_weights():  # every tensor is overwritten below; also leaves the global RNG untouched
            baked = type(self)(config).to(device=device, dtype=dtype)
        mapping64 = copy.deepcopy(self.mapping).to(torch.float64)
        w0 = mapping64(torch.zeros(self.config.latent_dim, dtype=torch.float64, device=device))
        baked.encoding.frequencies.copy_(self.encoding.frequencies)
        pairs = [(self.input_proj, baked.input_proj), (self.head, baked.head)]
        pairs += list(zip(self.trunk, baked.trunk, strict=True))
        for source, target in pairs:
            weight, bias = source.modulated.fold(w0)
            target.linear.weight.copy_(weight)
            target.linear.bias.copy_(bias)
        baked.train(self.training)
        return baked

    def adapter_target_modules(self) -> list[str]:
        """Names of the baked model's linear layers a LoRA adapts by default (valid as PEFT suffixes).

        `input_proj.linear` (the Fourier projection) and every `trunk.{i}.linear`. The head is left out: its
        output is only out_dim = 1 or 3 wide, so a rank-r factor of it is not low-rank, and it mostly sets
        colour/distance scale, shared across instances. Add `"head.linear"` to target it as well. The names
        refer to the baked model (`bake()` first); the modulated model has `...modulated` layers instead.
        """
        return ["input_proj.linear", *(f"trunk.{i}.linear" for i in range(self.config.num_layers))]

    def linear_layer_names(self) -> list[str]:
        """All plain linear layers of the baked field, input to output."""
        return [*self.adapter_target_modules(), "head.linear"]


__all__ = ["ADAPTER_TARGET_REGEX", "NeuralFieldModel", "NeuralFieldOutput"]

# Register with AutoConfig/AutoModel as soon as the model class exists (the registration module imports this one;
# see hf_wlora._import_hooks for why the defining module triggers it).
from . import registration  # noqa: E402, F401
