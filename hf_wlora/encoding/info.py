"""What travels with a weight data set: `WeightDatasetInfo`, saved as `wlora_info.json` next to the data.

The info holds everything needed to decode a row without guessing: the representation spec (factor names, shapes,
ranks, mask settings), the base field the adapters sit on (Hub id or local path, revision, subfolder), the modality
and the reconstruction score's name, the class names, the encoding settings, and per split the reconstruction
figures. It is plain JSON, so a data set downloaded from the Hub can be read even without hf_wlora.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from typing import Any

import numpy as np

from .. import __version__
from ..differences import setting_differences
from ..spec import RepresentationSpec

INFO_FILE_NAME = "wlora_info.json"

# the reconstruction score of each modality (the paper's reconstruction protocol)
DEFAULT_SCORE_NAMES: dict[str, str] = {"image": "psnr", "shape": "chamfer"}
# score name -> (what it is, whether higher is better); used by the card
SCORE_DESCRIPTIONS: dict[str, tuple[str, bool]] = {
    "psnr": ("PSNR in dB on [0, 1] images", True),
    "chamfer": ("Chamfer distance (mean of squared nearest-neighbour distances both ways)", False),
}


@dataclass
class WeightDatasetInfo:
    """The metadata of a weight data set, saved as `wlora_info.json` and shown in its card.

    Args:
        spec: The representation every row follows (factor names and shapes come from it).
        modality: "image" or "shape" (the base field's modality).
        score_name: Name of the per-row reconstruction score ("psnr" for images, "chamfer" for shapes); None picks
            the modality's default.
        base_field: Hub id or local path of the frozen base field the adapters were fitted on; the mlp kinds
            record theirs too (their rows are whole fields, but they decode with its configuration).
        base_field_revision: The base field's revision, ideally a commit hash, when known.
        base_field_subfolder: Subfolder of `base_field` that holds the field (e.g. "field" in a pipeline repo).
        base_field_sha256: SHA-256 of the (baked) base field's weights (`module_fingerprint`), so a resumed encoding
            never mixes rows fitted on two fields saved at the same place, and users can check which field it was.
        class_names: Names of the labels, if the source data set has classes; the `label` column is then a
            `ClassLabel`.
        encoding: The encoding settings (steps, learning rate, points per step, ...), JSON-serialisable.
        splits: Filled when a split is finalised: per split, the number of instances and the score's figures.
        hf_wlora_version: The version of hf_wlora that wrote the data set.
    """

    spec: RepresentationSpec
    modality: str
    score_name: str | None = None
    base_field: str | None = None
    base_field_revision: str | None = None
    base_field_subfolder: str | None = None
    base_field_sha256: str | None = None
    class_names: list[str] | None = None
    encoding: dict[str, Any] = field(default_factory=dict)
    splits: dict[str, dict[str, float]] = field(default_factory=dict)
    hf_wlora_version: str = __version__

    def __post_init__(self) -> None:
        if self.score_name is None:
            if self.modality not in DEFAULT_SCORE_NAMES:
                raise ValueError(
                    f"No default score for modality {self.modality!r}; pass score_name (the defaults are "
                    f"{DEFAULT_SCORE_NAMES})."
                )
            self.score_name = DEFAULT_SCORE_NAMES[self.modality]
        if self.class_names is not None:
            self.class_names = [str(name) for name in self.class_names]
            if not self.class_names or len(set(self.class_names)) != len(self.class_names):
                raise ValueError(f"class_names must be non-empty and unique, got {self.class_names}.")
        try:
            json.dumps(self.encoding, allow_nan=False)
        except (TypeError, ValueError) as error:
            raise ValueError(
                f"The encoding settings must be JSON-serialisable with finite numbers ({error}); convert tensors and "
                "paths to plain numbers and strings."
            ) from error

    # -- identity ------------------------------------------------------------------------------------------------
    def settings(self) -> dict[str, Any]:
        """Everything but the per-split figures and the writer's version: what two runs must share to be merged."""
        data = self.to_dict()
        del data["splits"], data["hf_wlora_version"]
        return data

    def setting_differences(self, other: WeightDatasetInfo) -> list[str]:
        """Human-readable differences between the settings of `self` and `other` (empty if they agree)."""
        ours, theirs = self.settings(), other.settings()
        del ours["spec"], theirs["spec"]
        return self.spec.differences(other.spec) + setting_differences(ours, theirs)

    def with_split(self, split: str, figures: dict[str, float]) -> WeightDatasetInfo:
        """A copy with `figures` recorded for `split` (other splits kept)."""
        return replace(self, splits={**self.splits, split: figures}, hf_wlora_version=__version__)

    # -- serialisation -------------------------------------------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        data = {f.name: getattr(self, f.name) for f in fields(self)}
        data["spec"] = self.spec.to_dict()
        return json.loads(json.dumps(data))  # a deep copy made of plain JSON types

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> WeightDatasetInfo:
        unknown = sorted(set(data) - {f.name for f in fields(cls)})
        if unknown:
            raise ValueError(f"Unknown fields in {INFO_FILE_NAME}: {unknown}. Is hf_wlora older than the data set?")
        if "spec" not in data or "modality" not in data:
            raise ValueError(f"{INFO_FILE_NAME} needs at least 'spec' and 'modality'.")
        return cls(**{**data, "spec": RepresentationSpec.from_dict(data["spec"])})

    def to_json_string(self) -> str:
        return json.dumps(self.to_dict(), indent=2, sort_keys=True) + "\n"

    @classmethod
    def from_json_string(cls, text: str) -> WeightDatasetInfo:
        try:
            data = json.loads(text)
        except json.JSONDecodeError as error:
            raise ValueError(f"{INFO_FILE_NAME} must be JSON: {error}") from error
        return cls.from_dict(data)

    @classmethod
    def load(cls, path: str | Path) -> WeightDatasetInfo:
        """Read the info from a `wlora_info.json` file."""
        return cls.from_json_string(Path(path).read_text())


def score_figures(scores: np.ndarray) -> dict[str, float]:
    """The figures a split records: instance count and mean/median/std/min/max of its finite scores.

    Non-finite scores (NaN: the score could not be measured, e.g. no mesh could be extracted; inf: a perfect PSNR)
    are left out of the statistics and counted apart, so one of them does not turn every figure into NaN or inf.
    """
    scores = np.asarray(scores, dtype=np.float64)
    finite = scores[np.isfinite(scores)]
    figures: dict[str, float] = {
        "num_instances": int(scores.size),
        "num_non_finite_scores": int(scores.size - finite.size),
    }
    if finite.size:
        figures.update(
            score_mean=float(finite.mean()),
            score_median=float(np.median(finite)),
            score_std=float(finite.std()),
            score_min=float(finite.min()),
            score_max=float(finite.max()),
        )
    return figures
