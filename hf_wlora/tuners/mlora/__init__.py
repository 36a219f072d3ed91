"""Multiplicative LoRA (mLoRA) as a PEFT tuner: config.py, layer.py, model.py, plus the instance-batched path.

Importing this package registers `peft_type="MLORA"` with PEFT (hf_wlora imports it automatically as soon as peft
is imported).
"""

from .registration import add_peft_type, register

# The enum member must exist before any MLoraConfig is created, so add it before importing the classes.
add_peft_type("MLORA")

from .config import MLoraConfig  # noqa: E402
from .functional import (  # noqa: E402
    adapter_factor_names,
    adapter_factors,
    batch_parameters,
    batched_call,
    batched_forward,
    batched_loss_backward,
    chunk_size_for,
    chunked_loss_backward,
    points_per_chunk,
    stack_adapter_factors,
)
from .layer import MLoraLayer  # noqa: E402
from .model import MLoraModel  # noqa: E402

register()

__all__ = [
    "MLoraConfig",
    "MLoraLayer",
    "MLoraModel",
    "adapter_factor_names",
    "adapter_factors",
    "batch_parameters",
    "batched_call",
    "batched_forward",
    "batched_loss_backward",
    "chunk_size_for",
    "chunked_loss_backward",
    "points_per_chunk",
    "stack_adapter_factors",
]
