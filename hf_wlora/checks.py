"""Argument checks every stage shares; a leaf module anyone may import (it imports nothing of hf_wlora)."""

from __future__ import annotations

from typing import Any


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
    raise ValueError(f"{name} must be {kind}, got {value!r}.")


__all__ = ["check_int", "is_int", "is_number"]
