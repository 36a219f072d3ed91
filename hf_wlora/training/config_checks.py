"""Recipe sections as validated dataclasses: what the stage-1 and stage-3 training configs share.

A recipe YAML holds one section per stage (`train_field`, `encode`, `train`); `RecipeSection` reads and writes one
section, rejects unknown keys with the closest valid one as a hint, reads numbers PyYAML leaves as text (`1e-2`) in
float settings (`read_numbers`, which every section reader uses), and `check_run_settings` validates the run
control every training loop has (checkpoints, logging, EMA, clipping, learning-rate schedule, mixed precision), so a
typo or a bad value fails before anything is loaded or trained.
"""

from __future__ import annotations

import dataclasses
import difflib
import types
import typing
from pathlib import Path
from typing import Any, ClassVar, TypeVar

from ..checks import INTEGER_TEXT, NUMBER_TEXT, check_int, check_output_dir, is_number

MIXED_PRECISIONS = ("no", "fp16", "bf16")
# Settings of every training config that do not change the numbers of a run, so a resume may change them.
RUN_CONTROL_KEYS = (
    "output_dir",
    "resume",
    "max_steps",
    "checkpoint_every",
    "keep_checkpoints",
    "log_every",
    "log_with",
)
LR_SCHEDULES = ("constant", "cosine")

Section = TypeVar("Section", bound="RecipeSection")


def reject_unknown(data: dict[str, Any], allowed: list[str], where: str) -> None:
    """Raise for keys not in `allowed`, suggesting the closest valid key."""
    for key in data:
        if key not in allowed:
            close = difflib.get_close_matches(str(key), allowed, n=1)
            hint = f" Did you mean {close[0]!r}?" if close else ""
            raise ValueError(f"{where}: unknown key {key!r}.{hint} Valid keys: {', '.join(sorted(allowed))}.")


def _number_types(hint: Any) -> set[type]:
    """The number types (int, float) a field's type hint holds: in a union, or as the items of a tuple or list."""
    if hint in (int, float):
        return {hint}
    if typing.get_origin(hint) in (typing.Union, types.UnionType, tuple, list):
        return set().union(*(_number_types(arg) for arg in typing.get_args(hint) if arg is not Ellipsis))
    return set()


def read_numbers(settings_class: type, data: dict[str, Any], where: str = "") -> dict[str, Any]:
    """`data` with numbers written as text read as numbers for the float settings of the dataclass `settings_class`.

    PyYAML reads `learning_rate: 1e-2` as the string "1e-2"; a user writing it means 0.01, so a float setting (or a
    list of floats) reads any decimal number written as text. Other text is left for the setting's own check to
    refuse. Integer settings never take text: an unquoted integer always reads as one, so text there was quoted
    (or is no integer, such as 1e3), and the error names the setting and the fix.
    """
    hints = typing.get_type_hints(settings_class)
    prefix = f"{where}: " if where else ""
    read = dict(data)
    for key, value in data.items():
        kinds = _number_types(hints.get(key))
        if float in kinds:
            read[key] = _read_float(value)
        elif int in kinds and isinstance(value, str):
            fix = f"; write it without quotes ({key}: {value.strip()})" if INTEGER_TEXT.fullmatch(value.strip()) else ""
            raise ValueError(f"{prefix}{key} must be an integer, got the string {value!r}{fix}.")
    return read


def _read_float(value: Any) -> Any:
    if isinstance(value, list):
        return [_read_float(item) for item in value]
    if isinstance(value, str) and NUMBER_TEXT.fullmatch(value.strip()):
        return float(value)
    return value


def check_positive_int(config: Any, name: str) -> None:
    check_int(getattr(config, name), name, minimum=1)


def check_run_settings(config: Any) -> None:
    """Validate the run-control settings a training config shares with the others (raises `ValueError`)."""
    for name in ("checkpoint_every", "keep_checkpoints", "log_every"):
        check_positive_int(config, name)
    if config.max_steps is not None:
        check_positive_int(config, "max_steps")
    check_int(config.seed, "seed", minimum=0)
    if config.lr_schedule not in LR_SCHEDULES:
        raise ValueError(f"lr_schedule must be one of {LR_SCHEDULES}, got {config.lr_schedule!r}.")
    if not is_number(config.min_lr_ratio) or not 0 <= config.min_lr_ratio <= 1:
        raise ValueError(f"min_lr_ratio must be in [0, 1], got {config.min_lr_ratio!r}.")
    if not is_number(config.ema_decay) or not 0 <= config.ema_decay < 1:
        raise ValueError(f"ema_decay must be in [0, 1), got {config.ema_decay!r}.")
    if config.max_grad_norm is not None and (not is_number(config.max_grad_norm) or not config.max_grad_norm > 0):
        raise ValueError(f"max_grad_norm must be a positive number or null, got {config.max_grad_norm!r}.")
    betas = config.adam_betas
    if not (isinstance(betas, tuple) and len(betas) == 2 and all(is_number(b) and 0 <= b < 1 for b in betas)):
        raise ValueError(f"adam_betas must be two numbers in [0, 1), got {betas!r}.")
    if not isinstance(config.resume, bool):
        raise ValueError(f"resume must be true or false, got {config.resume!r}.")
    check_output_dir(config.output_dir)
    if not isinstance(config.log_with, list) or not all(isinstance(t, str) for t in config.log_with):
        raise ValueError(f"log_with must be a list of tracker names, got {config.log_with!r}.")
    if config.mixed_precision not in MIXED_PRECISIONS:
        raise ValueError(f"mixed_precision must be one of {MIXED_PRECISIONS}, got {config.mixed_precision!r}.")


def read_recipe_section(path: str | Path, section: str) -> dict[str, Any]:
    """The mapping under `section` of the recipe YAML at `path`, or the whole file if it has no such section.

    Raises a ValueError naming the file when it is missing, or when the file or the section is not a mapping (a
    list, plain text or an empty file), so no reader meets a list where it expects settings.
    """
    import yaml

    path = Path(path)
    if not path.is_file():
        raise ValueError(f"config file {path} does not exist.")
    document = yaml.safe_load(path.read_text())
    if not isinstance(document, dict):
        raise ValueError(
            f"{path}: a recipe must be a mapping of sections to settings (here '{section}:' followed by indented "
            f"settings), got {type(document).__name__}."
        )
    data = document.get(section, document)
    if not isinstance(data, dict):
        raise ValueError(
            f"{path}: the {section!r} section must be a mapping of settings to values, got {type(data).__name__}."
        )
    return data


class RecipeSection:
    """Mixin for a dataclass that is one section of a recipe YAML (`section` names it).

    `run_control` lists the section's own settings that, like `RUN_CONTROL_KEYS`, do not change a run's numbers.
    """

    section: ClassVar[str]
    run_control: ClassVar[tuple[str, ...]] = ()

    def fingerprint(self) -> dict[str, Any]:
        """The settings that change the numbers of a run: a resume with other values is refused."""
        skip = set(RUN_CONTROL_KEYS) | set(self.run_control)
        return {key: value for key, value in self.to_dict().items() if key not in skip}

    @classmethod
    def setting_defaults(cls) -> dict[str, Any]:
        """Every setting that has a default, with it (what a checkpoint from before a setting existed ran with)."""
        found = {}
        for setting in dataclasses.fields(cls):  # type: ignore[arg-type]
            if setting.default is not dataclasses.MISSING:
                found[setting.name] = setting.default
            elif setting.default_factory is not dataclasses.MISSING:
                found[setting.name] = setting.default_factory()
        return found

    @classmethod
    def from_dict(cls: type[Section], data: Any, **overrides: Any) -> Section:
        """Build from a mapping (as read from YAML); `overrides` whose value is not None replace its entries."""
        name = cls.__name__
        if not isinstance(data, dict):
            raise ValueError(f"{name} must be a mapping of keys to values, got {type(data).__name__}.")
        data = {**data, **{key: value for key, value in overrides.items() if value is not None}}
        settings = dataclasses.fields(cls)  # type: ignore[arg-type]
        reject_unknown(data, [f.name for f in settings], name)
        data = read_numbers(cls, data)
        for f in settings:
            required = f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING
            if required and f.name not in data:
                raise ValueError(f"{name}: missing {f.name!r}.")
        return cls(**data)

    @classmethod
    def from_yaml(cls: type[Section], path: str | Path, section: str | None = None, **overrides: Any) -> Section:
        """Read this stage's section of a recipe YAML (or the whole file if it has no such section).

        A recipe holds one section per stage (`train_field`, `encode`, `train`), so one file describes a whole
        pipeline. `overrides` (e.g. output_dir, max_steps from the command line) replace its values.
        """
        path = Path(path)
        data = read_recipe_section(path, section or cls.section)
        try:
            return cls.from_dict(data, **overrides)
        except ValueError as error:
            raise ValueError(f"{path}: {error}") from error

    def to_dict(self) -> dict[str, Any]:
        """Plain mapping (YAML/JSON-friendly, tuples as lists) that `from_dict` reads back."""
        data = dataclasses.asdict(self)  # type: ignore[call-overload]
        return {key: list(value) if isinstance(value, tuple) else value for key, value in data.items()}

    def to_yaml(self, path: str | Path) -> None:
        """Write a recipe YAML with this config as its section."""
        import yaml

        Path(path).write_text(yaml.safe_dump({self.section: self.to_dict()}, sort_keys=False))
