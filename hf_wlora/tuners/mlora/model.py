"""The mLoRA tuner: where adapters go in a model, and PEFT's hooks for saving, loading and mixed batches."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from functools import partial
from typing import Any

import torch
from peft.tuners.tuners_utils import BaseTuner
from peft.utils.constants import SAFETENSORS_WEIGHTS_NAME
from peft.utils.other import get_pattern_key
from torch import nn

from ...fields import ADAPTER_TARGET_REGEX
from ...spec import LayerSpec, RepresentationSpec, count_unfrozen
from .config import MLoraConfig
from .layer import BASE_ADAPTER_NAME, MLoraLayer, create_mlora_module

# Default target modules per `config.model_type`, used when MLoraConfig.target_modules is None: for hf_wlora's
# neural fields, the input projection and the trunk (the 1- or 3-wide head is left out: see NeuralFieldModel).
TARGET_MODULES_BY_MODEL_TYPE: dict[str, list[str] | str] = {"neural_field": ADAPTER_TARGET_REGEX}


def _inject_adapter_names(module: nn.Module, args: tuple, kwargs: dict, adapter_names: list[str]) -> tuple:
    kwargs["adapter_names"] = adapter_names
    return args, kwargs


class MLoraModel(BaseTuner):
    """Creates mLoRA layers in a model; use it through `peft.get_peft_model(model, MLoraConfig(...))`.

    Example:
        ```py
        >>> import hf_wlora  # registers the tuner with PEFT
        >>> from peft import get_peft_model
        >>> model = get_peft_model(base_model, hf_wlora.MLoraConfig(r=4, target_modules=["fc1", "fc2"]))
        ```
    """

    prefix: str = "mlora_"
    tuner_layer_cls = MLoraLayer
    target_module_mapping = TARGET_MODULES_BY_MODEL_TYPE

    def _create_and_replace(
        self,
        config: MLoraConfig,
        adapter_name: str,
        target: nn.Module,
        target_name: str,
        parent: nn.Module,
        current_key: str,
        **kwargs: Any,
    ) -> None:
        if isinstance(parent, nn.MultiheadAttention):
            raise ValueError(
                f"Target module {current_key!r} belongs to an nn.MultiheadAttention, which reads its projection "
                "weights directly instead of calling the submodule, so an adapter there would silently do nothing. "
                "Adapt separate q/k/v/out nn.Linear layers instead, or leave this module out of target_modules."
            )
        rank = config.rank_pattern.get(get_pattern_key(config.rank_pattern.keys(), current_key), config.r)
        if isinstance(target, MLoraLayer):
            target.update_layer(adapter_name, config, rank)
            return
        new_module = create_mlora_module(target, adapter_name, config, rank, current_key)
        if adapter_name not in self.active_adapters:
            # an additional adapter is not trainable until it is activated, as in PEFT's other tuners
            new_module.requires_grad_(False)
        self._replace_module(parent, target_name, new_module, target)

    @contextmanager
    def _enable_peft_forward_hooks(self, *args: Any, **kwargs: Any) -> Iterator[None]:
        """Route `model(x, adapter_names=[...])` to every mLoRA layer, after checking the names."""
        adapter_names = kwargs.pop("adapter_names", None)
        if adapter_names is None:
            yield
            return
        if self.training:
            raise ValueError("`adapter_names` is for inference: call `model.eval()` first.")
        known = set().union(*(layer.mlora_A.keys() for layer in self.mlora_layers()))
        unknown = sorted({name for name in adapter_names if name != BASE_ADAPTER_NAME} - known)
        if unknown:
            raise ValueError(
                f"Unknown adapter name(s) in `adapter_names`: {unknown}. Known adapters: {sorted(known)}; "
                f"use {BASE_ADAPTER_NAME!r} for the base model."
            )
        hook = partial(_inject_adapter_names, adapter_names=list(adapter_names))
        handles = [layer.register_forward_pre_hook(hook, with_kwargs=True) for layer in self.mlora_layers()]
        try:
            yield
        finally:
            for handle in handles:
                handle.remove()

    def mlora_layers(self) -> Iterator[MLoraLayer]:
        """Every mLoRA layer of the model, in module order."""
        return (module for module in self.model.modules() if isinstance(module, MLoraLayer))

    def init_distribution(self, adapter_name: str = "default") -> dict[str, tuple[torch.Tensor, torch.Tensor]]:
        """Entry-wise (mean, std) of the distribution one adapter's factors are initialised from, keyed by spec name
        (`"{layer}.A"`, `"{layer}.B"`); see `MLoraLayer.init_distribution`."""
        config = self.peft_config[adapter_name]
        return {
            f"{layer.layer_key}.{factor}": moments
            for layer in self.mlora_layers()
            if adapter_name in layer.mlora_A
            for factor, moments in layer.init_distribution(adapter_name, config).items()
        }

    def representation_spec(self, adapter_name: str = "default") -> RepresentationSpec:
        """The `RepresentationSpec` of one adapter: its kind, layers (in module order), ranks and mask settings."""
        config = self.peft_config[adapter_name]
        layers = tuple(
            LayerSpec(name=layer.layer_key, d_out=layer.out_features, d_in=layer.in_features, r=layer.r[adapter_name])
            for layer in self.mlora_layers()
            if adapter_name in layer.mlora_A
        )
        return RepresentationSpec(
            kind="mlora" if config.multiplicative else "lora",
            layers=layers,
            asymmetric=config.asymmetric_mask,
            alpha=config.alpha,
            mask_ratio=config.mask_ratio,
            mask_seed=config.mask_seed,
            kappa=config.kappa,
        )

    @classmethod
    def _remap_adapter_state_dict_for_load(
        cls, model: nn.Module, config: MLoraConfig, adapter_name: str, state_dict: dict[str, torch.Tensor]
    ) -> dict[str, torch.Tensor]:
        """Map checkpoint keys to the model, refusing factors whose shapes do not fit the base model."""
        remapped = super()._remap_adapter_state_dict_for_load(model, config, adapter_name, state_dict)
        model_state = model.state_dict()
        mismatches = [
            f"{key}: saved {tuple(value.shape)}, model expects {tuple(model_state[key].shape)}"
            for key, value in remapped.items()
            if key in model_state and model_state[key].shape != value.shape
        ]
        if mismatches:
            shown = "; ".join(mismatches[:5]) + ("; ..." if len(mismatches) > 5 else "")
            base = config.base_model_name_or_path or "the base model it was trained on"
            raise ValueError(
                f"This mLoRA adapter does not fit the base model: {len(mismatches)} factor(s) have other shapes "
                f"({shown}). The adapter was made for a base model with other layer sizes; load it onto {base}."
            )
        cls._check_loaded_factors(model, config, adapter_name, remapped)
        return remapped

    @classmethod
    def _check_loaded_factors(
        cls, model: nn.Module, config: MLoraConfig, adapter_name: str, state_dict: dict[str, torch.Tensor]
    ) -> None:
        """Refuse a checkpoint that lacks a factor of the adapter, or whose A breaks the asymmetric mask.

        PEFT only warns about missing keys and loads the rest, leaving those factors at a fresh random init (or on the
        meta device with low_cpu_mem_usage); and an A whose frozen entries differ from the mask was saved under
        another mask, so the adapter it describes is not the one the config builds.
        """
        prefix = "base_model.model."  # present or not depending on how the adapter was injected: compare without it
        loaded = {key.removeprefix(prefix): value for key, value in state_dict.items()}
        missing, unfrozen = [], []
        for name, layer in model.named_modules():
            if not isinstance(layer, MLoraLayer) or adapter_name not in layer.mlora_A:
                continue
            for factor in MLoraLayer.adapter_layer_names:
                key = f"{name}.{factor}.{adapter_name}"
                saved_key = cls._remove_adapter_name_from_key(key, adapter_name)
                value = loaded.get(key.removeprefix(prefix))
                if value is None:
                    missing.append(saved_key)
                elif factor == "mlora_A" and adapter_name in layer.mlora_mask:
                    mask, frozen = layer.mlora_mask[adapter_name], layer.mlora_frozen[adapter_name]
                    wrong = count_unfrozen(value, mask, frozen)
                    if wrong:
                        unfrozen.append(f"{saved_key!r} has {wrong} values at frozen entries of its mask")
        source = f"{SAFETENSORS_WEIGHTS_NAME} of adapter {adapter_name!r}"
        if missing:
            raise ValueError(
                f"{source} lacks {len(missing)} tensor(s) its adapter_config.json needs: {missing}. Loading it "
                "would leave them freshly initialised, not as trained. Save the adapter again with save_pretrained, "
                "or use the complete file."
            )
        if unfrozen:
            raise ValueError(
                f"{source} breaks the asymmetric mask of its config (mask_seed={config.mask_seed}, mask_ratio="
                f"{config.mask_ratio}): {'; '.join(unfrozen)} that differ from the mask's fixed values. The file was "
                "saved under another mask or edited; load it with the adapter_config.json it was saved with."
            )
