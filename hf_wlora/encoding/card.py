"""The data set card of a weight data set, rendered from `model_cards/weight_dataset_card.md` (a Jinja template).

The card's YAML metadata carries tags, the `configs` entry that maps each split to its shards, and the features
(`dataset_info`), so the Hub and `datasets.load_dataset` read the columns exactly as hf_wlora wrote them. The body
says what the weights are, shows the spec table and the reconstruction figures, names the base field, explains how
to decode a row, and embeds `wlora_info.json`.
"""

from __future__ import annotations

import math
from typing import Any

from datasets.info import DatasetInfo, DatasetInfosDict
from datasets.utils.metadata import MetadataConfigs
from huggingface_hub import DatasetCard, DatasetCardData

from ..resources import card_template
from .info import SCORE_DESCRIPTIONS, WeightDatasetInfo
from .schema import weight_features

TEMPLATE_NAME = "weight_dataset_card.md"
CARD_FILE_NAME = "README.md"
_MODALITY_NOUNS = {"image": "image", "shape": "3-D shape"}


def _format(value: float | None) -> str:
    return "n/a" if value is None or not math.isfinite(value) else f"{value:.4g}"


def _layer_rows(info: WeightDatasetInfo) -> list[dict[str, Any]]:
    """One row per adapted layer for the card's spec table."""
    spec = info.spec
    shapes = spec.factor_shapes()
    rows = []
    for layer in spec.layers:
        factors = [name for name in shapes if name.rsplit(".", 1)[0] == layer.name]
        masked_cols = shapes[spec.masked_factor(layer.name)][1]
        rows.append(
            {
                "name": layer.name,
                "shape": f"{layer.d_out} x {layer.d_in}",
                "rank": "-" if layer.r is None else layer.r,
                "factors": ", ".join(f"`{name}` {tuple(shapes[name])}" for name in factors),
                "frozen": f"{round(spec.mask_ratio * masked_cols)} of {masked_cols}" if spec.asymmetric else "-",
            }
        )
    return rows


def _card_data(info: WeightDatasetInfo) -> DatasetCardData:
    spec = info.spec
    card_data = DatasetCardData(
        pretty_name=f"{spec.name} weights" + (f" of {info.base_field}" if info.base_field else ""),
        tags=["hf_wlora", "weight-space", "neural-fields", "mlora", spec.name, info.modality],
    )
    splits = {"data_files": [{"split": split, "path": f"data/{split}-*"} for split in sorted(info.splits)]}
    MetadataConfigs({"default": splits}).to_dataset_card_data(card_data)
    features = weight_features(spec, info.class_names)
    DatasetInfosDict({"default": DatasetInfo(features=features)}).to_dataset_card_data(card_data)
    return card_data


def render_card(info: WeightDatasetInfo, load_path: str) -> DatasetCard:
    """The card of a weight data set described by `info`; `load_path` is the Hub id or folder users load it from."""
    description, higher_is_better = SCORE_DESCRIPTIONS.get(info.score_name, (info.score_name, None))
    direction = {True: "higher is better", False: "lower is better", None: ""}[higher_is_better]
    splits = [
        {
            "name": name,
            "num_instances": figures["num_instances"],
            "mean": _format(figures.get("score_mean")),
            "median": _format(figures.get("score_median")),
            "std": _format(figures.get("score_std")),
            "min": _format(figures.get("score_min")),
            "max": _format(figures.get("score_max")),
            "non_finite": figures["num_non_finite_scores"],
        }
        for name, figures in sorted(info.splits.items())
    ]
    return DatasetCard.from_template(
        _card_data(info),
        template_path=str(card_template(TEMPLATE_NAME)),
        info=info,
        spec=info.spec,
        adapter=info.spec.kind != "mlp",
        modality_noun=_MODALITY_NOUNS.get(info.modality, info.modality),
        layers=_layer_rows(info),
        splits=splits,
        first_split=splits[0]["name"] if splits else "train",
        score_description=description,
        score_direction=direction,
        load_path=load_path,
        field_arguments="".join(
            f', {name}="{value}"'
            for name, value in (("subfolder", info.base_field_subfolder), ("revision", info.base_field_revision))
            if value
        ),
        info_json=info.to_json_string(),
    )
