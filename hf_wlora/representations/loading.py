"""The base field a representation lives on, loaded as every stage after stage 1 uses it: baked and frozen."""

from __future__ import annotations

import logging
from pathlib import Path

from ..fields import NeuralFieldModel

logger = logging.getLogger(__name__)


def load_base_field(location: str, subfolder: str | None = None, revision: str | None = None) -> NeuralFieldModel:
    """The baked, frozen base field at a local folder or Hub id (in `subfolder`, at `revision`).

    A modulated field (stage 1's `modulated_field/`) is baked here, its mean latent folded into plain layers, with a
    warning: adapters and decoders always run on the baked field.
    """
    field = _open_field(location, subfolder, revision)
    if not field.config.baked:
        logger.warning("The field %s is modulated; baking its mean latent into plain layers.", location)
        field = field.bake()
    return field.requires_grad_(False).eval()


def _open_field(location: str, subfolder: str | None, revision: str | None) -> NeuralFieldModel:
    """The field at `location`; a location that is neither a folder nor a Hub repo fails with what was looked for.

    Without this, a mistyped or not yet trained folder reaches the Hub client, which answers "Repo id must be in the
    form ..." about a path.
    """
    from huggingface_hub.errors import HFValidationError, RepositoryNotFoundError
    from huggingface_hub.utils import validate_repo_id

    def load() -> NeuralFieldModel:
        return NeuralFieldModel.from_pretrained(location, subfolder=subfolder or "", revision=revision)

    if Path(location).is_dir():
        if subfolder and not (Path(location) / subfolder).is_dir():  # transformers would name only `location`
            raise ValueError(
                f"No base field in the subfolder {subfolder!r} of {location}: {Path(location) / subfolder} does not "
                "exist. Check field_subfolder (or the weight data set's base_field_subfolder)."
            )
        return load()
    missing = f"No base field at {location!r}: the folder {Path(location).absolute()} does not exist"
    fix = "Check the path, or train the field first (`hf-wlora train-field` exports it to <output_dir>/field)."
    try:
        validate_repo_id(location)
    except HFValidationError:
        raise ValueError(f"{missing}. {fix}") from None
    try:
        return load()
    except OSError as error:
        if not isinstance(error.__cause__, RepositoryNotFoundError):  # offline, or a file or revision is missing
            raise OSError(f"{missing}, and loading it as a Hub repo failed: {error}") from error
        raise ValueError(
            f"{missing}, and no Hub repo {location!r} was found (a private or gated repo needs `hf auth login`). {fix}"
        ) from error


def check_field_modality(field: NeuralFieldModel, data: str, location: str) -> None:
    """Raise a ValueError when the data source `data` holds another modality (images, shapes) than `field` models.

    Called before any data is opened or any folder written: a 2-D field cannot fit 3-D shapes, and would otherwise
    fail at the first instance with an AttributeError.
    """
    from ..data import data_modality

    modelled, given = field.config.modality, data_modality(data)
    if modelled is not None and modelled != given:
        raise ValueError(
            f"The base field {location!r} models {modelled}s, but the data source {data!r} gives {given}s: use a "
            f"field trained on {given}s, or a data source of {modelled}s."
        )


__all__ = ["check_field_modality", "load_base_field"]
