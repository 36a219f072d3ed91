"""Stage 1 training: the field as a variational auto-decoder, with Accelerate.

`train_field(FieldTrainingConfig.from_yaml("recipes/configs/glyphs.yaml"))` trains, checkpoints, resumes and exports
(`field/`, `modulated_field/`, `codes.safetensors`, `metrics.json`). `recipes/train_field.py` and
`hf-wlora train-field` are thin wrappers over it. Names are imported on first access (accelerate is slow to import).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from ..._lazy import lazy_attributes

# public name -> module (relative to this package) that defines it
_LAZY_ATTRIBUTES: dict[str, str] = {
    "FieldTrainingConfig": ".config",
    "StageConfig": ".config",
    "VariationalCodes": ".codes",
    "AutoDecoder": ".codes",
    "kl_divergence": ".codes",
    "FieldTrainer": ".trainer",
    "FieldTrainingResult": ".trainer",
    "train_field": ".trainer",
}

if TYPE_CHECKING:
    from .codes import AutoDecoder, VariationalCodes, kl_divergence
    from .config import FieldTrainingConfig, StageConfig
    from .trainer import FieldTrainer, FieldTrainingResult, train_field

__all__ = [
    "AutoDecoder",
    "FieldTrainer",
    "FieldTrainingConfig",
    "FieldTrainingResult",
    "StageConfig",
    "VariationalCodes",
    "kl_divergence",
    "train_field",
]

__getattr__, __dir__ = lazy_attributes(__name__, _LAZY_ATTRIBUTES, __all__)
