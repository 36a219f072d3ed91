"""Lazy public names for a package: `import hf_wlora` (and its subpackages) stays cheap.

A package maps each public name to the module that defines it and calls `lazy_attributes` to get its module-level
`__getattr__` and `__dir__`; the defining module is imported on first access and the value cached in the package.
"""

from __future__ import annotations

import importlib
import sys
from collections.abc import Callable
from typing import Any


def lazy_attributes(
    package: str, locations: dict[str, str], public: list[str]
) -> tuple[Callable[[str], Any], Callable[[], list[str]]]:
    """Return `(__getattr__, __dir__)` for `package`; `locations` maps names to (possibly relative) module paths."""

    def __getattr__(name: str) -> Any:
        location = locations.get(name)
        if location is None:
            raise AttributeError(f"module {package!r} has no attribute {name!r}")
        value = getattr(importlib.import_module(location, package), name)
        setattr(sys.modules[package], name, value)
        return value

    def __dir__() -> list[str]:
        return sorted(public)

    return __getattr__, __dir__
