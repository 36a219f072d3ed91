"""Stage 2: encoding whole data sets into weight data sets (the fitted factors as a `datasets.Dataset` plus their
spec).

Names are imported on first access, so `import hf_wlora.encoding` stays cheap.

Encoding: `encode(EncodeConfig(...))` fits every instance of a data source with the representation package
(`hf_wlora.representations`: `make_representation` + `fit_instances`, batched over instances), sharded over
processes and resumable, and writes the weight data set as it goes.

Weight data sets: `WeightDatasetWriter` writes one resumably while the encoder runs; `load_weight_dataset` reads a
folder or Hub repo into a `WeightDataset`; `push_weight_dataset_to_hub` publishes one with its card;
`row_to_peft_adapter` / `peft_model_to_row` convert between rows and PEFT adapters; `module_fingerprint` is the hash
of a field's weights a data set records (`base_field_sha256`).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from .._lazy import lazy_attributes

# public name -> module (relative to this package) that defines it
_LAZY_ATTRIBUTES: dict[str, str] = {
    "EncodeConfig": ".encoder",
    "EncodeResult": ".encoder",
    "encode": ".encoder",
    # the representation API, re-exported here where earlier releases defined it
    "FitSettings": "..representations",
    "FitResult": "..representations",
    "fit_instances": "..representations",
    "Representation": "..representations",
    "make_representation": "..representations",
    "representation_from_spec": "..representations",
    "mlora_config_from_spec": "..representations",
    "save_peft_adapter": "..representations",
    "peft_model_to_row": "..representations",
    "WeightDatasetInfo": ".info",
    "INFO_FILE_NAME": ".info",
    "module_fingerprint": ".fingerprints",
    "weight_features": ".schema",
    "WeightDatasetWriter": ".writer",
    "WeightDataset": ".weight_dataset",
    "load_weight_dataset": ".weight_dataset",
    "save_weight_dataset": ".weight_dataset",
    "row_to_peft_adapter": ".adapters",
    "push_weight_dataset_to_hub": ".hub",
}

if TYPE_CHECKING:
    from ..representations import (
        FitResult,
        FitSettings,
        Representation,
        fit_instances,
        make_representation,
        mlora_config_from_spec,
        peft_model_to_row,
        representation_from_spec,
        save_peft_adapter,
    )
    from .adapters import row_to_peft_adapter
    from .encoder import EncodeConfig, EncodeResult, encode
    from .fingerprints import module_fingerprint
    from .hub import push_weight_dataset_to_hub
    from .info import INFO_FILE_NAME, WeightDatasetInfo
    from .schema import weight_features
    from .weight_dataset import WeightDataset, load_weight_dataset, save_weight_dataset
    from .writer import WeightDatasetWriter

__all__ = [
    "INFO_FILE_NAME",
    "EncodeConfig",
    "EncodeResult",
    "FitResult",
    "FitSettings",
    "Representation",
    "WeightDataset",
    "WeightDatasetInfo",
    "WeightDatasetWriter",
    "encode",
    "fit_instances",
    "load_weight_dataset",
    "make_representation",
    "mlora_config_from_spec",
    "module_fingerprint",
    "peft_model_to_row",
    "push_weight_dataset_to_hub",
    "representation_from_spec",
    "row_to_peft_adapter",
    "save_peft_adapter",
    "save_weight_dataset",
    "weight_features",
]

__getattr__, __dir__ = lazy_attributes(__name__, _LAZY_ATTRIBUTES, __all__)
