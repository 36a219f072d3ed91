"""hf_wlora: weight-space representation learning with neural fields, as a citizen of the Hugging Face stack.

`import hf_wlora` is cheap. Public names are imported on first access, and the PEFT tuner registers itself with
PEFT as soon as peft is imported (before or after hf_wlora), so `PeftModel.from_pretrained` and
`PeftConfig.from_pretrained` recognise saved mLoRA adapters.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from ._import_hooks import register_after_import

__version__ = "0.1.0"

# public name -> module that defines it
_LAZY_ATTRIBUTES: dict[str, str] = {
    "RepresentationSpec": "hf_wlora.spec",
    "LayerSpec": "hf_wlora.spec",
    "MLoraConfig": "hf_wlora.tuners.mlora",
    "MLoraModel": "hf_wlora.tuners.mlora",
    "batched_forward": "hf_wlora.tuners.mlora",
    "stack_adapter_factors": "hf_wlora.tuners.mlora",
}

if TYPE_CHECKING:
    from .spec import LayerSpec, RepresentationSpec
    from .tuners.mlora import MLoraConfig, MLoraModel, batched_forward, stack_adapter_factors

__all__ = [*_LAZY_ATTRIBUTES, "__version__"]


def __getattr__(name: str) -> Any:
    module = _LAZY_ATTRIBUTES.get(name)
    if module is None:
        raise AttributeError(f"module 'hf_wlora' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(__all__)


register_after_import("peft", "hf_wlora.tuners.mlora")
