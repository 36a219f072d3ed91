"""What a weight representation is and does, on top of its spec (`hf_wlora.spec`): one home that stage 2 (encoding
data sets), the pipeline (decoding and encoding new data) and the studies all use through this public API.

- `kinds`: the paper's six representations (`make_representation`, `representation_from_spec`), with the default
  encoding learning rates and mlp_asym's frozen-entry scale;
- `fitting`: batched per-instance fitting (`fit_instances`, `fit_in_batches`), each instance exactly as if alone;
- `targets`: what is fitted (`instance_targets` for data-source instances, `data_targets` for tensors, arrays, PIL
  images or SDF samples);
- `scoring`: the reconstruction score of fitted weights (`reconstruction_scores`: PSNR, or Chamfer of the mesh);
- `adapters`: one instance's factors as a PEFT model or adapter folder, and back (`peft_model_from_factors`,
  `save_peft_adapter`, `peft_model_to_row`, `mlora_config_from_spec`);
- `loading`: the baked, frozen base field (`load_base_field`), and whether a data source fits it
  (`check_field_modality`).

Names are imported on first access.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from .._lazy import lazy_attributes

# public name -> module (relative to this package) that defines it
_LAZY_ATTRIBUTES: dict[str, str] = {
    "DEFAULT_LEARNING_RATES": ".kinds",
    "MLP_KAPPA": ".kinds",
    "AdapterRepresentation": ".kinds",
    "Representation": ".kinds",
    "StandaloneMLPRepresentation": ".kinds",
    "make_representation": ".kinds",
    "representation_from_spec": ".kinds",
    "SDF_CLAMP": ".fitting",
    "FitResult": ".fitting",
    "FitSettings": ".fitting",
    "fit_in_batches": ".fitting",
    "fit_instances": ".fitting",
    "image_loss": ".fitting",
    "loss_for": ".fitting",
    "sdf_loss": ".fitting",
    "step_points": ".fitting",
    "POINTS_PER_SHAPE": ".targets",
    "data_targets": ".targets",
    "images_tensor": ".targets",
    "instance_targets": ".targets",
    "SCORE_POINTS": ".scoring",
    "reconstruction_scores": ".scoring",
    "mlora_config_from_spec": ".adapters",
    "peft_model_from_factors": ".adapters",
    "peft_model_to_row": ".adapters",
    "save_peft_adapter": ".adapters",
    "load_base_field": ".loading",
    "check_field_modality": ".loading",
}

if TYPE_CHECKING:
    from .adapters import mlora_config_from_spec, peft_model_from_factors, peft_model_to_row, save_peft_adapter
    from .fitting import (
        SDF_CLAMP,
        FitResult,
        FitSettings,
        fit_in_batches,
        fit_instances,
        image_loss,
        loss_for,
        sdf_loss,
        step_points,
    )
    from .kinds import (
        DEFAULT_LEARNING_RATES,
        MLP_KAPPA,
        AdapterRepresentation,
        Representation,
        StandaloneMLPRepresentation,
        make_representation,
        representation_from_spec,
    )
    from .loading import check_field_modality, load_base_field
    from .scoring import SCORE_POINTS, reconstruction_scores
    from .targets import POINTS_PER_SHAPE, data_targets, images_tensor, instance_targets

__all__ = [
    "DEFAULT_LEARNING_RATES",
    "MLP_KAPPA",
    "POINTS_PER_SHAPE",
    "SCORE_POINTS",
    "SDF_CLAMP",
    "AdapterRepresentation",
    "FitResult",
    "FitSettings",
    "Representation",
    "StandaloneMLPRepresentation",
    "check_field_modality",
    "data_targets",
    "fit_in_batches",
    "fit_instances",
    "image_loss",
    "images_tensor",
    "instance_targets",
    "load_base_field",
    "loss_for",
    "make_representation",
    "mlora_config_from_spec",
    "peft_model_from_factors",
    "peft_model_to_row",
    "reconstruction_scores",
    "representation_from_spec",
    "save_peft_adapter",
    "sdf_loss",
    "step_points",
]

__getattr__, __dir__ = lazy_attributes(__name__, _LAZY_ATTRIBUTES, __all__)
