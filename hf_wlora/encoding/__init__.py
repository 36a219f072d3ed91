"""Stage 2: per-instance fitting, and weight data sets (the fitted factors as a `datasets.Dataset` plus their spec).

Names are imported on first access, so `import hf_wlora.encoding` stays cheap.

Encoding: `encode(EncodeConfig(...))` fits every instance of a data source (`make_representation` +
`fit_instances`, batched over instances) and writes the weight data set as it goes.

Weight data sets: `WeightDatasetWriter` writes one resumably while the encoder runs; `load_weight_dataset` reads a
folder or Hub repo into a `WeightDataset`; `push_weight_dataset_to_hub` publishes one with its card;
`row_to_peft_adapter` / `peft_model_to_row` convert between rows and PEFT adapters.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from .._lazy import lazy_attributes

# public name -> module (relative to this package) that defines it
_LAZY_ATTRIBUTES: dict[str, str] = {
    "EncodeConfig": ".encoder",
    "EncodeResult": ".encoder",
    "encode": ".encoder",
    "FitSettings": ".fitting",
    "FitResult": ".fitting",
    "fit_instances": ".fitting",
    "Representation": ".representations",
    "make_representation": ".representations",
    "representation_from_spec": ".representations",
    "WeightDatasetInfo": ".info",
    "INFO_FILE_NAME": ".info",
    "weight_features": ".schema",
    "WeightDatasetWriter": ".writer",
    "WeightDataset": ".weight_dataset",
    "load_weight_dataset": ".weight_dataset",
    "save_weight_dataset": ".weight_dataset",
    "mlora_config_from_spec": ".adapters",
    "save_peft_adapter": ".adapters",
    "row_to_peft_adapter": ".adapters",
    "peft_model_to_row": ".adapters",
    "push_weight_dataset_to_hub": ".hub",
}

if TYPE_CHECKING:
    from .adapters import mlora_config_from_spec, peft_model_to_row, row_to_peft_adapter, save_peft_adapter
    from .encoder import EncodeConfig, EncodeResult, encode
    from .fitting import FitResult, FitSettings, fit_instances
    from .hub import push_weight_dataset_to_hub
    from .info import INFO_FILE_NAME, WeightDatasetInfo
    from .representations import Representation, make_representation, representation_from_spec
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
    "peft_model_to_row",
    "push_weight_dataset_to_hub",
    "representation_from_spec",
    "row_to_peft_adapter",
    "save_peft_adapter",
    "save_weight_dataset",
    "weight_features",
]

__getattr__, __dir__ = lazy_attributes(__name__, _LAZY_ATTRIBUTES, __all__)
