"""Reproduce the paper's studies: reconstruction, weight-space structure, generation, discrimination.

`reproduce(ReproduceConfig(scale="small"))` (or `hf-wlora reproduce --scale small`) trains the base fields, encodes
the data as the six representations, runs the four studies and writes `REPORT.md` with tables and plots beside the
paper's published figures. Names are imported on first access.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from .._lazy import lazy_attributes

# public name -> module (relative to this package) that defines it
_LAZY_ATTRIBUTES: dict[str, str] = {
    "ReproduceConfig": ".config",
    "StudyBudget": ".config",
    "ReproduceResult": ".runner",
    "reproduce": ".runner",
}

if TYPE_CHECKING:
    from .config import ReproduceConfig, StudyBudget
    from .runner import ReproduceResult, reproduce

__all__ = ["ReproduceConfig", "ReproduceResult", "StudyBudget", "reproduce"]

__getattr__, __dir__ = lazy_attributes(__name__, _LAZY_ATTRIBUTES, __all__)
