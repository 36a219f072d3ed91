"""Name the settings that differ between two runs, down to the nested key, so a refused resume says what changed."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

# A value's repr is cut to this length in a message: a long list should not bury the keys that differ.
_MAX_VALUE_CHARS = 80


class _Unset:
    def __repr__(self) -> str:
        return "<unset>"


_UNSET = _Unset()


def _short(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= _MAX_VALUE_CHARS else f"{text[: _MAX_VALUE_CHARS - 3]}..."


def setting_differences(before: Mapping[str, Any], after: Mapping[str, Any], prefix: str = "") -> list[str]:
    """`key: old -> new` for every key whose value differs, recursing into nested mappings (`model.hidden_size`) and
    into lists of equal length (`stages[1].batch_size`).

    A key present on one side only shows `<unset>` on the other. Keys are sorted, values shortened to 80 characters.
    """
    found = []
    for key in sorted(set(before) | set(after), key=str):
        name = f"{prefix}{key}"
        old, new = before.get(key, _UNSET), after.get(key, _UNSET)
        found += _value_differences(name, old, new)
    return found


def _value_differences(name: str, old: Any, new: Any) -> list[str]:
    if isinstance(old, Mapping) and isinstance(new, Mapping):
        return setting_differences(old, new, prefix=f"{name}.")
    if isinstance(old, (list, tuple)) and isinstance(new, (list, tuple)) and len(old) == len(new):
        pairs = enumerate(zip(old, new, strict=True))
        return [line for index, pair in pairs for line in _value_differences(f"{name}[{index}]", *pair)]
    return [f"{name}: {_short(old)} -> {_short(new)}"] if old != new else []


__all__ = ["setting_differences"]
