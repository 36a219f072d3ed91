"""Argument checks every stage shares; a leaf module anyone may import (it imports nothing of hf_wlora)."""

from __future__ import annotations

import math
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

# A decimal number as YAML 1.2 writes it. PyYAML follows YAML 1.1, whose floats need a dot and a signed exponent, so
# it reads `1e-2` and `1.0e2` as text.
NUMBER_TEXT = re.compile(r"[-+]?(\d+\.?\d*|\.\d+)([eE][-+]?\d+)?")
INTEGER_TEXT = re.compile(r"[-+]?\d+")


def is_int(value: Any) -> bool:
    """Whether `value` is an integer and not a bool (True is an int to Python, never a count to a user)."""
    return isinstance(value, int) and not isinstance(value, bool)


def is_number(value: Any) -> bool:
    """Whether `value` is an int or a float and not a bool."""
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def check_int(value: Any, name: str, minimum: int | None = None) -> int:
    """Return `value` if it is an integer (not a bool) of at least `minimum`; else raise a ValueError naming `name`."""
    if is_int(value) and (minimum is None or value >= minimum):
        return value
    kind = {None: "an integer", 0: "a non-negative integer", 1: "a positive integer"}.get(
        minimum, f"an integer >= {minimum}"
    )
    raise ValueError(f"{name} must be {kind}, got {value!r}.{_quoted_hint(value)}")


def check_number(value: Any, name: str, *, positive: bool = False, fraction: bool = False) -> float:
    """Return `value` if it is a finite int or float (not a bool), > 0 if `positive`, in [0, 1) if `fraction`; else
    raise a ValueError naming `name`.

    NaN and infinity are refused here because they pass every comparison-based range check and only surface later,
    as NaN outputs or an error after the work is done.
    """
    if is_number(value) and math.isfinite(value) and (not positive or value > 0) and (not fraction or 0 <= value < 1):
        return value
    kind = "a number in [0, 1)" if fraction else "a positive number" if positive else "a finite number"
    raise ValueError(f"{name} must be {kind}, got {value!r}.{_quoted_hint(value)}")


def check_guidance_interval(value: Any, name: str = "guidance_interval") -> tuple[float, float]:
    """Return `value` as (start, end) if it is two fractions of the denoising steps with 0 <= start <= end <= 1;
    else raise a ValueError naming `name`."""
    if (
        isinstance(value, (list, tuple))
        and len(value) == 2
        and all(is_number(bound) and 0 <= bound <= 1 for bound in value)
        and value[0] <= value[1]
    ):
        return float(value[0]), float(value[1])
    raise ValueError(
        f"{name} must be (start, end), fractions of the denoising steps with 0 <= start <= end <= 1 (for example "
        f"(0.5, 1): guidance in the second half), got {value!r}."
    )


def _quoted_hint(value: Any) -> str:
    """The fix for a number written in quotes (a YAML string): a count or a rate is never text."""
    return " Write numbers without quotes." if isinstance(value, str) and NUMBER_TEXT.fullmatch(value.strip()) else ""


def check_output_dir(value: Any, name: str = "output_dir") -> str:
    """Return `value` if it is a folder that exists or can be created; else raise a ValueError naming `name`.

    Checked before any work: a file at the path or at one of its parents would otherwise fail at the first write,
    after loading and perhaps hours of training.
    """
    if not isinstance(value, (str, Path)) or not str(value):
        raise ValueError(f"{name} must be a non-empty path, got {value!r}.")
    path = Path(value)
    for folder in (path, *path.parents):
        if folder.exists():
            if not folder.is_dir():
                raise ValueError(
                    f"{name} {path} cannot be a folder: {folder} is a file. Choose another {name} or move the file."
                )
            break
    return str(value)


def check_device(value: Any, name: str = "device") -> str | None:
    """Return `value` if it is None or names a torch device this machine has ("cpu", "cuda", "cuda:1", "mps");
    else raise a ValueError naming `name`.

    Checked before any work: a GPU that is not there would otherwise surface as a CUDA error after the data and the
    base field are loaded.
    """
    if value is None:
        return None
    import torch  # here, not at the top: this module is a leaf that imports nothing heavy

    try:
        device = torch.device(value)
    except (RuntimeError, TypeError) as error:
        raise ValueError(f"{name} must name a torch device such as 'cpu' or 'cuda:0', got {value!r}: {error}") from None
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(
            f"{name}={value!r} asks for a GPU, but torch.cuda.is_available() is False on this machine (no GPU, or a "
            "CPU build of torch). Leave it unset to use the process's accelerator or the CPU, or set it to 'cpu'."
        )
    if device.type == "cuda" and device.index is not None and device.index >= torch.cuda.device_count():
        raise ValueError(
            f"{name}={value!r} asks for GPU {device.index}, but this machine has {torch.cuda.device_count()}."
        )
    if device.type == "mps" and not torch.backends.mps.is_available():
        raise ValueError(f"{name}={value!r} asks for Apple's MPS, which this machine lacks; set it to 'cpu'.")
    return str(device)


def complete_from_pretrained(load: Callable[..., tuple[Any, dict]], what: str, args: tuple, kwargs: dict) -> Any:
    """`load(*args, **kwargs)`, a transformers or diffusers `from_pretrained`, refusing a checkpoint that lacks a
    weight (a persistent buffer included) or holds one of another shape.

    Both libraries initialise such weights afresh and only log a report: a base field with a random layer would encode
    and decode every instance wrongly, a transformer without its normalisation statistics would sample in normalised
    space, without a word. `what` names the model in the error; `output_loading_info` is honoured.
    """
    wants_info = kwargs.pop("output_loading_info", False)
    model, info = load(*args, output_loading_info=True, **kwargs)
    problems = {name: sorted(info[name]) for name in ("missing_keys", "mismatched_keys") if info.get(name)}
    if problems:
        where = args[0] if args else kwargs.get("pretrained_model_name_or_path")
        raise ValueError(
            f"The {what} at {where} does not hold the weights its config needs: "
            + "; ".join(f"{name.replace('_', ' ')} {keys}" for name, keys in problems.items())
            + f". The weights file is incomplete or belongs to another {what}: save the {what} again, or point at "
            "the folder it was saved to."
        )
    return (model, info) if wants_info else model


__all__ = [
    "INTEGER_TEXT",
    "NUMBER_TEXT",
    "check_device",
    "check_int",
    "check_number",
    "check_output_dir",
    "complete_from_pretrained",
    "is_int",
    "is_number",
]
