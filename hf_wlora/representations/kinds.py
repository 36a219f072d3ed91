"""The paper's six weight representations, as objects the batched fitter trains and the decoder evaluates.

- lora, lora_asym, mlora, mlora_asym (`AdapterRepresentation`): per-instance factors of the mLoRA tuner on a frozen
  baked base field, evaluated through the PEFT model itself (`batched_call`, broadcast over instances).
- mlp, mlp_asym (`StandaloneMLPRepresentation`): every weight and bias of a standalone small field with no base,
  HyperDiffusion-style; the asymmetric variant freezes large-variance entries of each weight matrix.

Both expose the same interface: `spec`, `initial_factors()`, `forward(factors, coords)` for N instances at once,
`loss_backward(...)` for one fitting step, and `field_function(factors)` for the decoders (render, mesh).
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Mapping
from typing import Any

import torch
from peft import get_peft_model

from ..checks import check_int
from ..fields import NeuralFieldConfig, NeuralFieldModel
from ..spec import REPRESENTATIONS, LayerSpec, RepresentationSpec
from ..tuners.mlora import (
    MLoraConfig,
    adapter_factors,
    batch_parameters,
    batched_call,
    chunk_size_for,
    chunked_loss_backward,
    points_per_chunk,
)

LossFn = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]
# Default std of mlp_asym's frozen weight entries. An mlp's frozen entries are weights of the field itself: too large
# and every output saturates (SDFs beyond DeepSDF's clamp everywhere), the gradient vanishes and no instance moves
# from the shared start. 0.03 fitted the glyphs best of the values tried and is the largest that still gave the
# shapes a surface (the sweep is in benchmarks/RESULTS.md, "Encoding learning rate", mlp_asym's frozen entries).
MLP_KAPPA = 0.03
# Adam's default encoding learning rate per kind. Adam moves every entry by about the learning rate per step whatever
# the gradient's scale; mLoRA's factors start near 1 and must travel distances of order 1 to reshape a weight (M from
# 1 towards 0 or 2), while additive LoRA's B starts at 0 and only travels as far as the weight change itself, and
# diverges at mLoRA's rate. Each value is the best fit of a sweep (benchmarks/RESULTS.md, "Encoding learning rate").
DEFAULT_LEARNING_RATES = {
    "mlp": 1e-3,
    "mlp_asym": 1e-3,
    "lora": 1e-2,
    "lora_asym": 1e-2,
    "mlora": 1e-1,
    "mlora_asym": 1e-1,
}
# The tuner's init per mode when encoding: the paper authors' A, B ~ N(1, 0.01^2) for mLoRA (whose independent
# entries the structure study perturbs), and PEFT's LoRA init (B = 0, Kaiming A) for the additive kinds. The tuner's
# own default, an exact identity, is PEFT's convention for fine-tuning; see MLoraConfig.init_weights.
ENCODING_INIT_WEIGHTS: dict[str, bool | str] = {"multiplicative": "gaussian", "additive": True}


# The adapter kinds broadcast over instances: the field's forward treats leading dimensions as batch dimensions, and
# every adapted layer is an nn.Linear.
_VECTORIZE = "broadcast"


def _first_output(outputs: Any) -> torch.Tensor:
    return outputs[0]


class Representation:
    """Common interface; see the module docstring."""

    spec: RepresentationSpec
    modality: str
    _width: int  # widest adapted layer: sets the default chunk size

    model: torch.nn.Module

    @property
    def name(self) -> str:
        return self.spec.name

    @property
    def device(self) -> torch.device:
        """Where this representation computes: its model's device (the CPU unless moved with `to`)."""
        return next(self.model.buffers()).device

    def to(self, device: torch.device | str) -> Representation:
        """Compute on `device` from now on: the model and every fixed tensor of the representation move; returns
        self. Factors and coordinates given to it may live anywhere (they are moved as they are used)."""
        self.model.to(device)
        return self

    def initial_factors(self) -> dict[str, torch.Tensor]:
        """One instance's starting factors, shared by every instance (spec names and shapes)."""
        raise NotImplementedError

    def init_distribution(self) -> dict[str, tuple[torch.Tensor, torch.Tensor]]:
        """Entry-wise (mean, std) of the random initialisation of each factor (spec names and shapes): what the
        structure study perturbs, i = mean + std * xi with xi ~ N(0, 1) per entry."""
        raise NotImplementedError

    def forward(
        self, factors: Mapping[str, torch.Tensor], coords: torch.Tensor, chunk_size: int | None = None
    ) -> torch.Tensor:
        """Field values (N, P, C) of N instances at coords (N, P, d), on the representation's device.

        A field is evaluated point by point, so more points than fill a chunk for one instance (`points_per_chunk`:
        e.g. 8,192 at 64 wide on the CPU) are evaluated in pieces of that many, whose activations stay in the cache:
        the same values to the bit, and a 3-D decoder's 65,536-point calls 1.2-2x faster at 64 wide
        (`benchmarks/bench_decode.py`). `chunk_size` is instances per chunk (default: `chunk_size_for` a piece).
        """
        factors = {name: value.to(self.device) for name, value in factors.items()}
        coords = coords.to(self.device)
        parameters = self._batch(factors, coords)
        pieces = coords.split(points_per_chunk(coords.device, self._width), dim=1) if coords.dim() == 3 else (coords,)
        chunk_size = chunk_size or chunk_size_for(pieces[:1], self._width)
        values = [self._batched_values(parameters, piece, chunk_size) for piece in pieces]
        return values[0] if len(values) == 1 else torch.cat(values, dim=1)

    def loss_backward(
        self,
        factors: Mapping[str, torch.Tensor],
        coords: torch.Tensor,
        targets: torch.Tensor,
        loss_fn: LossFn,
        chunk_size: int | None = None,
    ) -> torch.Tensor:
        """Per-instance losses of one step; the gradient of their sum is accumulated into the factors' `.grad`."""
        chunk_size = chunk_size or chunk_size_for((coords,), self._width)
        return chunked_loss_backward(
            lambda chunk_factors, chunk_coords: self._batched_values(chunk_factors, chunk_coords, chunk_size),
            self._batch(factors, coords),
            (coords,),
            (targets,),
            loss_fn,
            chunk_size,
        )

    def _batch(self, factors: Mapping[str, torch.Tensor], coords: torch.Tensor) -> Mapping[str, torch.Tensor]:
        """Stacked factors as `_batched_values` takes them (the same tensors), prepared once per call rather than
        once per chunk; by default as given."""
        return factors

    def _batched_values(
        self, factors: Mapping[str, torch.Tensor], coords: torch.Tensor, chunk_size: int
    ) -> torch.Tensor:
        """The model's values for stacked factors (as `_batch` gives them): what each representation does
        differently."""
        raise NotImplementedError

    def field_function(self, factors: Mapping[str, torch.Tensor]) -> Callable[[torch.Tensor], torch.Tensor]:
        """A decoder-ready field function: shared coords (P, d) -> values (N, P, C) of the N given instances, computed
        on the representation's device and returned on the coordinates' device."""
        num_instances = next(iter(factors.values())).shape[0]
        factors = {name: value.to(self.device) for name, value in factors.items()}  # once, not per chunk of points

        @torch.no_grad()
        def evaluate(coords: torch.Tensor) -> torch.Tensor:
            return self.forward(factors, coords.expand(num_instances, *coords.shape)).to(coords.device)

        return evaluate


class AdapterRepresentation(Representation):
    """lora, lora_asym, mlora or mlora_asym on a frozen baked base field, through the mLoRA PEFT tuner."""

    def __init__(self, base_field: NeuralFieldModel, config: MLoraConfig, seed: int = 0) -> None:
        if not base_field.config.baked:
            raise ValueError("Adapters are fitted on the baked base field: call `field.bake()` first.")
        # A private copy: get_peft_model rewrites the model it is given, and the caller's field must stay plain.
        # Seeded: every process of a distributed encoding must start its instances from the same factors.
        with torch.random.fork_rng():
            torch.manual_seed(seed)
            self.model = get_peft_model(copy.deepcopy(base_field).requires_grad_(False), config).eval()
        self.spec = self.model.base_model.representation_spec()
        self.modality = base_field.config.modality
        self._width = max(layer.d_out for layer in self.spec.layers)

    @classmethod
    def from_name(
        cls,
        name: str,
        base_field: NeuralFieldModel,
        rank: int = 4,
        target_modules: list[str] | str | None = None,
        seed: int = 0,
        **config_kwargs: Any,
    ) -> AdapterRepresentation:
        """lora, lora_asym, mlora or mlora_asym with rank `rank` on `base_field`'s default adapter targets."""
        if name not in REPRESENTATIONS or name.startswith("mlp"):
            raise ValueError(f"AdapterRepresentation takes lora, lora_asym, mlora or mlora_asym, got {name!r}.")
        mode = "multiplicative" if name.startswith("mlora") else "additive"
        config = MLoraConfig(
            r=rank,
            mode=mode,
            asymmetric_mask=name.endswith("_asym"),
            target_modules=target_modules or base_field.adapter_target_modules(),
            **{"init_weights": ENCODING_INIT_WEIGHTS[mode], **config_kwargs},
        )
        return cls(base_field, config, seed=seed)

    def initial_factors(self) -> dict[str, torch.Tensor]:
        return {name: value.detach().clone() for name, value in adapter_factors(self.model).items()}

    def init_distribution(self) -> dict[str, tuple[torch.Tensor, torch.Tensor]]:
        # the tuner's own init: N(1, init_std^2) scaled (multiplicative), or a random A beside B = 0 (additive)
        return self.model.base_model.init_distribution()

    def _batch(self, factors: Mapping[str, torch.Tensor], coords: torch.Tensor) -> dict[str, torch.Tensor]:
        # checked against the adapter and keyed by parameter name once per call: per chunk, those walks over every
        # module were a tenth of a chunk's Python work (benchmarks/RESULTS.md, issue 15)
        return batch_parameters(self.model, factors, (coords,), vectorize=_VECTORIZE)

    def _batched_values(
        self, parameters: Mapping[str, torch.Tensor], coords: torch.Tensor, chunk_size: int
    ) -> torch.Tensor:
        outputs = batched_call(
            self.model, parameters, coords, chunk_size=chunk_size, vectorize=_VECTORIZE, return_dict=False
        )
        return _first_output(outputs)


class StandaloneMLPRepresentation(Representation):
    """mlp or mlp_asym: all weights and biases of a standalone field (a baked NeuralFieldModel, no base).

    Every instance starts from the same weights; the encoder sets them to the first instance's fit
    (`set_initial_factors`), as HyperDiffusion does. The asymmetric variant's frozen entries default to
    N(0, MLP_KAPPA^2): random next to the trained weights they replace, but not so large that the field saturates
    (then every output is clamped, the gradient is exactly zero and no instance moves from the shared start).
    """

    def __init__(
        self,
        name: str,
        field_config: NeuralFieldConfig,
        seed: int = 0,
        hidden_size: int | None = None,
        **spec_kwargs: Any,
    ) -> None:
        if name not in ("mlp", "mlp_asym"):
            raise ValueError(f"StandaloneMLPRepresentation takes mlp or mlp_asym, got {name!r}.")
        if spec_kwargs.get("kappa") is None:
            spec_kwargs["kappa"] = MLP_KAPPA
        config = copy.deepcopy(field_config)
        config.baked = True
        if hidden_size is not None:  # a narrower (or wider) field than the base, e.g. parameter-matched to an adapter
            check_int(hidden_size, "hidden_size", minimum=1)
            config.hidden_size = hidden_size
        with torch.random.fork_rng():
            torch.manual_seed(seed)
            self.model = NeuralFieldModel(config).requires_grad_(False).eval()
        layers = tuple(
            LayerSpec(name=layer, d_out=module.out_features, d_in=module.in_features, bias=module.bias is not None)
            for layer in self.model.linear_layer_names()
            for module in [self.model.get_submodule(layer)]
        )
        self.spec = RepresentationSpec.from_name(name, layers, **spec_kwargs)
        self.modality = config.modality
        self._width = max(layer.d_out for layer in layers)
        # Frozen entries per weight: (mask, values), enforced in every forward pass (zero gradient there).
        self._frozen = {
            f"{layer.name}.weight": (self.spec.mask(layer.name), self.spec.frozen_values(layer.name))
            for layer in self.spec.layers
            if self.spec.asymmetric
        }
        parameters = dict(self.model.named_parameters())
        # std of each tensor's entries under the field's default init (the frozen entries are drawn separately)
        self._init_stds = {
            name: float(parameters[name].detach().std(unbiased=False)) for name in self.spec.factor_shapes()
        }
        self._initial = self._apply_frozen(
            {name: parameters[name].detach().clone() for name in self.spec.factor_shapes()}
        )

    def to(self, device: torch.device | str) -> StandaloneMLPRepresentation:
        super().to(device)
        self._frozen = {name: (mask.to(device), values.to(device)) for name, (mask, values) in self._frozen.items()}
        self._initial = {name: value.to(device) for name, value in self._initial.items()}
        return self

    def _apply_frozen(self, factors: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        applied = dict(factors)
        for name, (mask, values) in self._frozen.items():
            applied[name] = torch.where(mask, values.to(factors[name].dtype), factors[name])
        return applied

    def initial_factors(self) -> dict[str, torch.Tensor]:
        return {name: value.clone() for name, value in self._initial.items()}

    def init_distribution(self) -> dict[str, tuple[torch.Tensor, torch.Tensor]]:
        # The start is a fit (HyperDiffusion's), not a draw: its random part is taken as zero-mean with the std of
        # each tensor under the field's default init, so eps has the scale of that tensor's entries.
        return {
            name: (torch.zeros_like(self._initial[name]), torch.full_like(self._initial[name], std))
            for name, std in self._init_stds.items()
        }

    def set_initial_factors(self, factors: Mapping[str, torch.Tensor]) -> None:
        """Make `factors` (one instance, spec names) the starting point of every later fit."""
        shapes = self.spec.factor_shapes()
        if {name: tuple(value.shape) for name, value in factors.items()} != shapes:
            raise ValueError(f"Initial factors must have exactly the spec's names and shapes: {shapes}.")
        self._initial = self._apply_frozen(
            {name: value.detach().to(self.device, copy=True) for name, value in factors.items()}
        )

    def _batch(self, factors: Mapping[str, torch.Tensor], coords: torch.Tensor) -> Mapping[str, torch.Tensor]:
        # once per call, as `batch_parameters` checks the adapters' factors: functional_call ignores a name it does not
        # know and uses the model's own (shared) weight for a missing one, so a misnamed factor would go unfitted
        shapes = self.spec.factor_shapes()
        missing, unexpected = sorted(shapes.keys() - factors.keys()), sorted(factors.keys() - shapes.keys())
        if missing or unexpected:
            raise ValueError(f"Factor names do not match the spec: missing {missing}, unexpected {unexpected}.")
        for name, value in factors.items():
            if tuple(value.shape) != (coords.shape[0], *shapes[name]):
                raise ValueError(
                    f"Factor {name!r} has shape {tuple(value.shape)}; expected ({coords.shape[0]}, *{shapes[name]}): "
                    "one per instance of the coordinates."
                )
        return factors

    def _batched_values(
        self, factors: Mapping[str, torch.Tensor], coords: torch.Tensor, chunk_size: int
    ) -> torch.Tensor:
        # vmap: each instance has whole weight matrices of its own, which plain nn.Linear cannot broadcast over
        outputs = batched_call(
            self.model, self._apply_frozen(factors), coords, chunk_size=chunk_size, vectorize="vmap", return_dict=False
        )
        return _first_output(outputs)


def make_representation(
    name: str,
    base_field: NeuralFieldModel,
    rank: int = 4,
    seed: int = 0,
    **kwargs: Any,
) -> Representation:
    """Build one of the six representations for a baked base field.

    The LoRA kinds adapt `base_field`; the mlp kinds train a standalone field of the same architecture (its config,
    without latent). `seed` fixes the initial factors, so every process and every run starts from the same ones.
    `kwargs` go to `MLoraConfig` (LoRA kinds: mask_ratio, mask_seed, kappa, alpha, init_std, target_modules) or to
    `RepresentationSpec` (mlp kinds: mask_ratio, mask_seed, kappa; and hidden_size, the standalone field's width,
    by default the base field's).
    """
    if name not in REPRESENTATIONS:
        raise ValueError(f"Unknown representation {name!r}; expected one of {REPRESENTATIONS}.")
    if name.startswith("mlp"):
        return StandaloneMLPRepresentation(name, base_field.config, seed=seed, **kwargs)
    return AdapterRepresentation.from_name(name, base_field, rank=rank, seed=seed, **kwargs)


def representation_from_spec(spec: RepresentationSpec, base_field: NeuralFieldModel, seed: int = 0) -> Representation:
    """The representation that decodes weights of `spec` on `base_field` (e.g. rows of a weight data set).

    `seed` fixes the initial factors (as in `make_representation`): pass the encoding's seed to fit new instances
    exactly as the data set's were. Raises a ValueError listing the differences if the base field cannot give exactly
    that spec (other layer shapes, other layer names), rather than decoding into something else.
    """
    if spec.kind == "mlp":
        representation: Representation = StandaloneMLPRepresentation(
            spec.name,
            base_field.config,
            seed=seed,
            hidden_size=spec.layers[0].d_out,  # the standalone field's width, as encoded
            mask_ratio=spec.mask_ratio,
            mask_seed=spec.mask_seed,
            kappa=spec.kappa,
        )
    else:
        from .adapters import mlora_config_from_spec  # adapters imports this module

        config = mlora_config_from_spec(spec)
        config.init_weights = ENCODING_INIT_WEIGHTS[config.mode]  # start new instances as the data set's did
        representation = AdapterRepresentation(base_field, config, seed=seed)
    spec.check_matches(representation.spec, what="this base field's representation")
    return representation
