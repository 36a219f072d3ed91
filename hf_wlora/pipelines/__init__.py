"""Stage 3 for users: `WeightSpacePipeline` (a diffusers pipeline that samples and decodes weights).

Names are imported on first access, so `import hf_wlora.pipelines` stays cheap. The module path of the pipeline
(`hf_wlora.pipelines.pipeline_weight_space`) is recorded in saved `model_index.json` files: keep it stable.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from .._lazy import lazy_attributes

# public name -> module (relative to this package) that defines it
_LAZY_ATTRIBUTES: dict[str, str] = {
    "WeightSpacePipeline": ".pipeline_weight_space",
    "WeightSpacePipelineOutput": ".pipeline_weight_space",
}

if TYPE_CHECKING:
    from .pipeline_weight_space import WeightSpacePipeline, WeightSpacePipelineOutput

__all__ = ["WeightSpacePipeline", "WeightSpacePipelineOutput"]

__getattr__, __dir__ = lazy_attributes(__name__, _LAZY_ATTRIBUTES, __all__)
