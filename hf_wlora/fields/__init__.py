"""Stage 1: the base neural field (a transformers model), baking, rendering and meshing.

Names are imported on first access, so `import hf_wlora.fields` stays cheap and decoding a plain field function
never imports transformers. Importing `hf_wlora.fields.registration` registers `model_type="neural_field"` with
`AutoConfig` / `AutoModel`.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from .._lazy import lazy_attributes

# public name -> module (relative to this package) that defines it
_LAZY_ATTRIBUTES: dict[str, str] = {
    # through the modeling module, whose import registers the Auto classes
    "NeuralFieldConfig": ".modeling_neural_field",
    "NeuralFieldModel": ".modeling_neural_field",
    "NeuralFieldOutput": ".modeling_neural_field",
    "ADAPTER_TARGET_REGEX": ".modeling_neural_field",
    "image_coordinates": ".coordinates",
    "volume_coordinates": ".coordinates",
    "FieldFunction": ".field_function",
    "evaluate_field": ".field_function",
    "render_images": ".rendering",
    "to_pil": ".rendering",
    "image_grid": ".rendering",
    "render_meshes": ".mesh_rendering",
    "sdf_grid": ".meshing",
    "extract_mesh": ".meshing",
    "extract_meshes": ".meshing",
    "MeshList": ".meshing",
}

if TYPE_CHECKING:
    from .coordinates import image_coordinates, volume_coordinates
    from .field_function import FieldFunction, evaluate_field
    from .mesh_rendering import render_meshes
    from .meshing import MeshList, extract_mesh, extract_meshes, sdf_grid
    from .modeling_neural_field import ADAPTER_TARGET_REGEX, NeuralFieldConfig, NeuralFieldModel, NeuralFieldOutput
    from .rendering import image_grid, render_images, to_pil

__all__ = [
    "ADAPTER_TARGET_REGEX",
    "FieldFunction",
    "MeshList",
    "NeuralFieldConfig",
    "NeuralFieldModel",
    "NeuralFieldOutput",
    "evaluate_field",
    "extract_mesh",
    "extract_meshes",
    "image_coordinates",
    "image_grid",
    "render_images",
    "render_meshes",
    "sdf_grid",
    "to_pil",
    "volume_coordinates",
]


__getattr__, __dir__ = lazy_attributes(__name__, _LAZY_ATTRIBUTES, __all__)
