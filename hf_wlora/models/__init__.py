"""Stage 3: the diffusion transformer over weights (`WeightSpaceDiT`, a diffusers model) and its tokenisation.

Names are imported on first access, so `import hf_wlora.models` stays cheap.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from .._lazy import lazy_attributes

# public name -> module (relative to this package) that defines it
_LAZY_ATTRIBUTES: dict[str, str] = {
    "WeightSpaceDiT": ".weight_space_dit",
    "WeightSpaceDiTOutput": ".weight_space_dit",
    "TokenLayout": ".tokenization",
    "token_layout": ".tokenization",
    "rank_token_layout": ".tokenization",
    "tensor_token_layout": ".tokenization",
}

if TYPE_CHECKING:
    from .tokenization import TokenLayout, rank_token_layout, tensor_token_layout, token_layout
    from .weight_space_dit import WeightSpaceDiT, WeightSpaceDiTOutput

__all__ = [
    "TokenLayout",
    "WeightSpaceDiT",
    "WeightSpaceDiTOutput",
    "rank_token_layout",
    "tensor_token_layout",
    "token_layout",
]

__getattr__, __dir__ = lazy_attributes(__name__, _LAZY_ATTRIBUTES, __all__)
