"""The base field a representation lives on, loaded as every stage after stage 1 uses it: baked and frozen."""

from __future__ import annotations

import logging

from ..fields import NeuralFieldModel

logger = logging.getLogger(__name__)


def load_base_field(location: str, subfolder: str | None = None, revision: str | None = None) -> NeuralFieldModel:
    """The baked, frozen base field at a local folder or Hub id (in `subfolder`, at `revision`).

    A modulated field (stage 1's `modulated_field/`) is baked here, its mean latent folded into plain layers, with a
    warning: adapters and decoders always run on the baked field.
    """
    field = NeuralFieldModel.from_pretrained(location, subfolder=subfolder or "", revision=revision)
    if not field.config.baked:
        logger.warning("The field %s is modulated; baking its mean latent into plain layers.", location)
        field = field.bake()
    return field.requires_grad_(False).eval()


__all__ = ["load_base_field"]
