"""Stage 3 for users: `WeightSpacePipeline` (a diffusers pipeline that samples and decodes weights), and pictures of
decoded weights (`decoded_tiles`, `tile_grid`, `side_by_side`, `picture_scale`).

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
    "push_pipeline_to_hub": ".hub",
    "decoded_tiles": ".pictures",
    "picture_scale": ".pictures",
    "side_by_side": ".pictures",
    "tile_grid": ".pictures",
}

if TYPE_CHECKING:
    from .hub import push_pipeline_to_hub
    from .pictures import decoded_tiles, picture_scale, side_by_side, tile_grid
    from .pipeline_weight_space import WeightSpacePipeline, WeightSpacePipelineOutput

__all__ = [
    "WeightSpacePipeline",
    "WeightSpacePipelineOutput",
    "decoded_tiles",
    "picture_scale",
    "push_pipeline_to_hub",
    "side_by_side",
    "tile_grid",
]

__getattr__, __dir__ = lazy_attributes(__name__, _LAZY_ATTRIBUTES, __all__)
