"""hf_wlora: weight-space representation learning with neural fields, as a citizen of the Hugging Face stack.

`import hf_wlora` is cheap. Public names are imported on first access, and registration happens as soon as the
library it registers with is imported (before or after hf_wlora): the PEFT tuner (`peft_type="MLORA"`) when peft is
imported, and the neural field's `AutoConfig`/`AutoModel` entries (`model_type="neural_field"`) when transformers is.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from ._import_hooks import register_after_import
from ._lazy import lazy_attributes

__version__ = "0.1.0"

# public name -> module that defines it
_LAZY_ATTRIBUTES: dict[str, str] = {
    "RepresentationSpec": "hf_wlora.spec",
    "LayerSpec": "hf_wlora.spec",
    "MLoraConfig": "hf_wlora.tuners.mlora",
    "MLoraModel": "hf_wlora.tuners.mlora",
    "batched_forward": "hf_wlora.tuners.mlora",
    "batched_loss_backward": "hf_wlora.tuners.mlora",
    "stack_adapter_factors": "hf_wlora.tuners.mlora",
    "NeuralFieldConfig": "hf_wlora.fields",
    "NeuralFieldModel": "hf_wlora.fields",
    "NeuralFieldOutput": "hf_wlora.fields",
    "render_images": "hf_wlora.fields",
    "sdf_grid": "hf_wlora.fields",
    "extract_meshes": "hf_wlora.fields",
    "to_pil": "hf_wlora.fields",
    "GlyphImages": "hf_wlora.data",
    "ProceduralShapes": "hf_wlora.data",
    "load_image_folder": "hf_wlora.data",
    "load_hf_images": "hf_wlora.data",
    "load_mesh_folder": "hf_wlora.data",
    "load_sdf_samples": "hf_wlora.data",
    "EncodeConfig": "hf_wlora.encoding",
    "encode": "hf_wlora.encoding",
    "WeightDataset": "hf_wlora.encoding",
    "WeightDatasetInfo": "hf_wlora.encoding",
    "WeightDatasetWriter": "hf_wlora.encoding",
    "load_weight_dataset": "hf_wlora.encoding",
    "push_weight_dataset_to_hub": "hf_wlora.encoding",
    "row_to_peft_adapter": "hf_wlora.encoding",
    "FitSettings": "hf_wlora.representations",
    "fit_instances": "hf_wlora.representations",
    "make_representation": "hf_wlora.representations",
    "representation_from_spec": "hf_wlora.representations",
    "peft_model_to_row": "hf_wlora.representations",
    "WeightSpaceDiT": "hf_wlora.models",
    "WeightSpacePipeline": "hf_wlora.pipelines",
    "WeightSpacePipelineOutput": "hf_wlora.pipelines",
    "GeneratorTrainingConfig": "hf_wlora.pipelines.generator_training",
    "train_generator": "hf_wlora.pipelines.generator_training",
}

if TYPE_CHECKING:
    from .data import (
        GlyphImages,
        ProceduralShapes,
        load_hf_images,
        load_image_folder,
        load_mesh_folder,
        load_sdf_samples,
    )
    from .encoding import (
        EncodeConfig,
        WeightDataset,
        WeightDatasetInfo,
        WeightDatasetWriter,
        encode,
        load_weight_dataset,
        push_weight_dataset_to_hub,
        row_to_peft_adapter,
    )
    from .fields import (
        NeuralFieldConfig,
        NeuralFieldModel,
        NeuralFieldOutput,
        extract_meshes,
        render_images,
        sdf_grid,
        to_pil,
    )
    from .models import WeightSpaceDiT
    from .pipelines import WeightSpacePipeline, WeightSpacePipelineOutput
    from .pipelines.generator_training import GeneratorTrainingConfig, train_generator
    from .representations import (
        FitSettings,
        fit_instances,
        make_representation,
        peft_model_to_row,
        representation_from_spec,
    )
    from .spec import LayerSpec, RepresentationSpec
    from .tuners.mlora import MLoraConfig, MLoraModel, batched_forward, batched_loss_backward, stack_adapter_factors

__all__ = [
    "EncodeConfig",
    "FitSettings",
    "GeneratorTrainingConfig",
    "GlyphImages",
    "LayerSpec",
    "MLoraConfig",
    "MLoraModel",
    "NeuralFieldConfig",
    "NeuralFieldModel",
    "NeuralFieldOutput",
    "ProceduralShapes",
    "RepresentationSpec",
    "WeightDataset",
    "WeightDatasetInfo",
    "WeightDatasetWriter",
    "WeightSpaceDiT",
    "WeightSpacePipeline",
    "WeightSpacePipelineOutput",
    "__version__",
    "batched_forward",
    "batched_loss_backward",
    "encode",
    "extract_meshes",
    "fit_instances",
    "load_hf_images",
    "load_image_folder",
    "load_mesh_folder",
    "load_sdf_samples",
    "load_weight_dataset",
    "make_representation",
    "peft_model_to_row",
    "push_weight_dataset_to_hub",
    "render_images",
    "representation_from_spec",
    "row_to_peft_adapter",
    "sdf_grid",
    "stack_adapter_factors",
    "to_pil",
    "train_generator",
]

__getattr__, __dir__ = lazy_attributes(__name__, _LAZY_ATTRIBUTES, __all__)

register_after_import("transformers", "hf_wlora.fields.registration")
register_after_import("peft", "hf_wlora.tuners.mlora")
