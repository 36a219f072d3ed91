"""Weight data set rows -> PEFT adapters: a row becomes an adapter folder `PeftModel.from_pretrained` loads."""

from __future__ import annotations

from pathlib import Path

from ..representations import save_peft_adapter
from .weight_dataset import WeightDataset


def row_to_peft_adapter(weights: WeightDataset, index: int, output_dir: str | Path) -> Path:
    """Write row `index` of `weights` as a PEFT adapter folder for its base field; return the folder.

    `PeftModel.from_pretrained(base_field, folder)` then gives the field this row encodes. The adapter config
    records the base field's id and revision from the data set's info.
    """
    return save_peft_adapter(
        weights.spec,
        weights.factors(index),
        output_dir,
        base_model_name_or_path=weights.info.base_field,
        revision=weights.info.base_field_revision,
    )


__all__ = ["row_to_peft_adapter"]
