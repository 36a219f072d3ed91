"""Registration of mLoRA as a PEFT method of its own (`peft_type="MLORA"`).

PEFT's `register_peft_method` only accepts names that are already members of `peft.utils.PeftType`, a closed
str-Enum. We add the member the way `Enum` itself stores members, so `PeftType("MLORA")`, `PeftType.MLORA` and
JSON round trips of `adapter_config.json` all resolve. Both steps are idempotent.
"""

from __future__ import annotations

from peft.utils import PeftType, register_peft_method

PEFT_TYPE_NAME = "MLORA"


def add_peft_type(name: str) -> PeftType:
    """Add `name` to `peft.utils.PeftType` (once) and return the member."""
    if name in PeftType._member_map_:
        return PeftType[name]
    member = str.__new__(PeftType, name)
    member._name_ = name
    member._value_ = name
    member.__objclass__ = PeftType
    # type.__setattr__ bypasses EnumType.__setattr__, which refuses to set attributes named like members.
    type.__setattr__(PeftType, name, member)
    PeftType._member_map_[name] = member
    PeftType._value2member_map_[name] = member
    PeftType._member_names_.append(name)
    return member


def register() -> None:
    """Make PEFT know the mLoRA config and tuner classes (safe to call more than once)."""
    from peft.mapping import PEFT_TYPE_TO_CONFIG_MAPPING

    from .config import MLoraConfig
    from .model import MLoraModel

    peft_type = add_peft_type(PEFT_TYPE_NAME)
    if peft_type in PEFT_TYPE_TO_CONFIG_MAPPING:
        return
    register_peft_method(name=PEFT_TYPE_NAME.lower(), config_cls=MLoraConfig, model_cls=MLoraModel, prefix="mlora_")
