"""Register `model_type="neural_field"` with transformers' `AutoConfig` and `AutoModel` (on import, idempotently).

`hf_wlora` imports this module as soon as transformers is imported (see `hf_wlora._import_hooks`), so
`AutoConfig.from_pretrained` / `AutoModel.from_pretrained` load saved neural fields without `trust_remote_code`.
Importing it again, or calling `register()` again, is harmless: `exist_ok=True` simply re-points the entry.
"""

from __future__ import annotations

from transformers import AutoConfig, AutoModel

from .configuration_neural_field import NeuralFieldConfig
from .modeling_neural_field import NeuralFieldModel


def register() -> None:
    """Map `neural_field` to `NeuralFieldConfig` / `NeuralFieldModel` in the Auto classes."""
    AutoConfig.register(NeuralFieldConfig.model_type, NeuralFieldConfig, exist_ok=True)
    AutoModel.register(NeuralFieldConfig, NeuralFieldModel, exist_ok=True)


register()
