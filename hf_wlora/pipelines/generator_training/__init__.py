"""Stage 3 training: a `WeightSpaceDiT` on a weight data set, with Accelerate, exported as a `WeightSpacePipeline`.

`train_generator(GeneratorTrainingConfig.from_yaml("recipes/configs/glyphs.yaml"))` trains, checkpoints, resumes,
writes sample grids and exports `pipeline/` and `metrics.json`. `recipes/train.py` and `hf-wlora train` are thin
wrappers over it. Names are imported on first access (accelerate and diffusers are slow to import).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from ..._lazy import lazy_attributes

# public name -> module (relative to this package) that defines it
_LAZY_ATTRIBUTES: dict[str, str] = {
    "GeneratorTrainingConfig": ".config",
    "GeneratorTrainer": ".trainer",
    "GeneratorTrainingResult": ".trainer",
    "denoising_loss": ".trainer",
    "train_generator": ".trainer",
}

if TYPE_CHECKING:
    from .config import GeneratorTrainingConfig
    from .trainer import GeneratorTrainer, GeneratorTrainingResult, denoising_loss, train_generator

__all__ = [
    "GeneratorTrainer",
    "GeneratorTrainingConfig",
    "GeneratorTrainingResult",
    "denoising_loss",
    "train_generator",
]

__getattr__, __dir__ = lazy_attributes(__name__, _LAZY_ATTRIBUTES, __all__)
