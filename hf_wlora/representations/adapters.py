"""Adapter weights <-> PEFT: one instance's factors become a PEFT model or an adapter folder, and back.

The adapter config is rebuilt from the representation spec alone, so the folder loads onto the base field with the
exact layers, ranks and mask of the data set: `target_modules` is a regex matching exactly the spec's layer names
(a list would also match any module whose name merely ends with one of them), and `rank_pattern` pins the layers
whose rank differs from the most common one, with anchored patterns for the same reason.
"""

from __future__ import annotations

import copy
import re
from collections import Counter
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import save_file
from torch import nn

from ..spec import RepresentationSpec, count_unfrozen
from ..tuners.mlora import MLoraConfig, adapter_factors

ADAPTER_WEIGHTS_NAME = "adapter_model.safetensors"


def mlora_config_from_spec(
    spec: RepresentationSpec, base_model_name_or_path: str | None = None, revision: str | None = None
) -> MLoraConfig:
    """The `MLoraConfig` whose adapters have exactly `spec`'s layers, ranks, alpha, mode and mask."""
    if spec.kind == "mlp":
        raise ValueError(
            f"A {spec.name} row holds all weights of a standalone field MLP, not an adapter on a base field, so it "
            "has no PEFT adapter form. Load it into that MLP instead: its factor names are the MLP's parameter names "
            "({layer}.weight, {layer}.bias)."
        )
    ranks = [layer.r for layer in spec.layers]
    rank = Counter(ranks).most_common(1)[0][0]
    return MLoraConfig(
        r=rank,
        alpha=spec.alpha,
        mode="multiplicative" if spec.kind == "mlora" else "additive",
        target_modules="|".join(re.escape(layer.name) for layer in spec.layers),
        rank_pattern={f"^{re.escape(layer.name)}$": layer.r for layer in spec.layers if layer.r != rank},
        asymmetric_mask=spec.asymmetric,
        mask_ratio=spec.mask_ratio,
        mask_seed=spec.mask_seed,
        kappa=spec.kappa,
        base_model_name_or_path=base_model_name_or_path,
        revision=revision,
    )


def save_peft_adapter(
    spec: RepresentationSpec,
    factors: Mapping[str, torch.Tensor],
    output_dir: str | Path,
    base_model_name_or_path: str | None = None,
    revision: str | None = None,
) -> Path:
    """Write one instance's factors (keyed by spec name) as a PEFT adapter folder; return the folder.

    The folder holds `adapter_config.json` (an `MLoraConfig`, see `mlora_config_from_spec`) and
    `adapter_model.safetensors` with PEFT's keys `base_model.model.{layer}.mlora_A` / `mlora_B`.
    """
    config = mlora_config_from_spec(spec, base_model_name_or_path, revision)
    _check_factors(spec, factors)
    state = {}
    for name in spec.factor_shapes():
        layer, factor = name.rsplit(".", 1)
        state[f"base_model.model.{layer}.mlora_{factor}"] = factors[name].detach().cpu().contiguous()
    folder = Path(output_dir)
    config.save_pretrained(folder)
    save_file(state, folder / ADAPTER_WEIGHTS_NAME, metadata={"format": "pt"})
    return folder


def peft_model_to_row(model: nn.Module, adapter_name: str = "default") -> dict[str, torch.Tensor]:
    """The factors of one mLoRA adapter of `model` as a row: float32 copies keyed by spec name."""
    return {
        name: value.detach().to("cpu", torch.float32, copy=True)
        for name, value in adapter_factors(model, adapter_name).items()
    }


def peft_model_from_factors(
    spec: RepresentationSpec, base_field: nn.Module, factors: Mapping[str, torch.Tensor]
) -> Any:
    """A `PeftModel`: a copy of `base_field` carrying one instance's adapter (`factors` keyed by spec name).

    `save_pretrained` on it writes an ordinary PEFT adapter folder; `base_field` itself is left unchanged.
    """
    from peft import get_peft_model

    _check_factors(spec, factors)
    model = get_peft_model(copy.deepcopy(base_field), mlora_config_from_spec(spec)).eval()
    with torch.no_grad():
        for name, parameter in adapter_factors(model).items():
            parameter.copy_(factors[name])
    return model


def _check_factors(spec: RepresentationSpec, factors: Mapping[str, torch.Tensor]) -> None:
    """Refuse factors that are not exactly one instance of `spec`, naming the first mismatch.

    Besides names and shapes, an asymmetric spec's frozen entries must hold the mask's values: lora, mlora and
    their asym kinds share every shape, and those entries are the only trace of which one a row really is.
    """
    shapes = spec.factor_shapes()
    if set(factors) != set(shapes):
        raise ValueError(f"The factors do not match the spec: expected {sorted(shapes)}, got {sorted(factors)}.")
    for name, shape in shapes.items():
        if tuple(factors[name].shape) != shape:
            raise ValueError(f"Factor {name!r} has shape {tuple(factors[name].shape)}; the spec says {shape}.")
    if not spec.asymmetric:
        return
    for layer in spec.layers:
        name = spec.masked_factor(layer.name)
        mask = spec.mask(layer.name)
        wrong = count_unfrozen(factors[name].detach(), mask, spec.frozen_values(layer.name))
        if wrong:
            raise ValueError(
                f"Factor {name!r} has {wrong} value{'s' if wrong > 1 else ''} at the frozen entries of the "
                f"{spec.name} mask ({int(mask.sum())} entries, mask_seed={spec.mask_seed}) that differ from the "
                f"mask's fixed values: these are not {spec.name!r} weights of this spec (a row of another "
                "representation, e.g. a symmetric kind, or of another mask_seed?). Convert them with the spec they "
                "were made with (a weight data set's `spec`)."
            )
