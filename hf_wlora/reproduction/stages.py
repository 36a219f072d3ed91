"""The three stages as the studies need them, each skipped when a previous run of the same folder finished it.

`reproduce` may run for hours at the paper's scale; a crash or an interrupt loses at most the stage in progress,
and those resume themselves (field and generator training from their last checkpoint, encoding from the last
written batch).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from .config import PARAMETER_MATCHED_MLP, StudyBudget


def base_field(budget: StudyBudget, folder: Path, seed: int) -> Path:
    """Train (or reuse) the modality's base field; returns the baked field's folder."""
    from ..fields.auto_decoder import FieldTrainingConfig, train_field

    output_dir = folder / "field_training"
    if (output_dir / "metrics.json").is_file():
        return output_dir / "field"
    config = FieldTrainingConfig.from_dict(
        {
            **budget.train_field,
            "data": budget.data,
            "data_options": budget.data_options,
            "output_dir": str(output_dir),
            "resume": True,
            "seed": seed,
        }
    )
    return train_field(config).field_dir


def encode_config(budget: StudyBudget, representation: str, field_dir: Path, output_dir: Path, seed: int) -> Any:
    """The `EncodeConfig` of one system under the budget (also what the structure study fits with).

    `mlp_matched` is the mlp representation at `matched_mlp_width`.
    """
    from ..encoding import EncodeConfig

    settings = {
        "field": str(field_dir),
        "output_dir": str(output_dir),
        "data": budget.data,
        "data_options": budget.data_options,
        "seed": seed,
        **budget.encode,
    }
    if representation == PARAMETER_MATCHED_MLP:
        width = matched_mlp_width(EncodeConfig(**settings, representation="mlora_asym"))
        return EncodeConfig(**settings, representation="mlp", mlp_hidden_size=width)
    return EncodeConfig(**settings, representation=representation)


def matched_mlp_width(adapter: Any) -> int:
    """The width of the mlp whose numbers per instance come closest to those of the adapter `EncodeConfig`'s
    representation on its field (the mlp's count grows with the square of its width, the adapter's is fixed)."""
    from ..representations import load_base_field, make_representation

    field = load_base_field(adapter.field, adapter.field_subfolder, adapter.field_revision)
    modules = {"target_modules": adapter.target_modules} if adapter.target_modules is not None else {}
    target = make_representation(adapter.representation, field, rank=adapter.rank, **modules).spec.num_parameters

    def numbers(width: int) -> int:
        return make_representation("mlp", field, hidden_size=width).spec.num_parameters

    return min(range(1, field.config.hidden_size + 1), key=lambda width: abs(numbers(width) - target))


def weight_dataset(budget: StudyBudget, representation: str, field_dir: Path, folder: Path, seed: int) -> Path:
    """Encode (or reuse, or finish encoding) the data as `representation`; returns the weight data set folder."""
    from ..encoding import INFO_FILE_NAME, encode

    output_dir = folder / "weights" / representation
    if not (output_dir / INFO_FILE_NAME).is_file():
        encode(encode_config(budget, representation, field_dir, output_dir, seed))
    return output_dir


def generator(budget: StudyBudget, weights_dir: Path, folder: Path, seed: int) -> Path:
    """Train (or reuse, or resume training) a diffusion transformer on a weight data set; returns the pipeline."""
    from ..pipelines.generator_training import GeneratorTrainingConfig, train_generator

    output_dir = folder / "generators" / weights_dir.name
    if not (output_dir / "metrics.json").is_file():
        settings = dict(budget.generation)
        if budget.equal_transformer_sizes:
            settings["model"] = _equal_size_model(settings.get("model", {}), weights_dir)
        config = GeneratorTrainingConfig.from_dict(
            {
                **settings,
                "weights": str(weights_dir),
                "output_dir": str(output_dir),
                "resume": True,
                "seed": seed,
            }
        )
        train_generator(config)
    return output_dir / "pipeline"


def _equal_size_model(model: dict[str, Any], weights_dir: Path) -> dict[str, Any]:
    """`matched_transformer_model` for the weight data set at `weights_dir`, against mlora_asym on its field."""
    from ..encoding import INFO_FILE_NAME, WeightDatasetInfo
    from ..representations import load_base_field, make_representation

    info = WeightDatasetInfo.load(weights_dir / INFO_FILE_NAME)
    field = load_base_field(info.base_field, info.base_field_subfolder, info.base_field_revision)
    reference = make_representation("mlora_asym", field, rank=info.encoding["rank"]).spec
    return matched_transformer_model(model, info.spec, reference, len(info.class_names or []))


def matched_transformer_model(model: dict[str, Any], spec: Any, reference: Any, num_classes: int) -> dict[str, Any]:
    """`model` (`WeightSpaceDiT` options) with the hidden size whose transformer on `spec` has the parameter count
    closest to that of `model` itself on the `reference` spec.

    The width stays a multiple of the heads and at most `model`'s, so a spec that tokenises like the reference
    (every adapter kind of the same rank) keeps `model` unchanged.
    """
    import inspect

    from ..models import WeightSpaceDiT

    defaults = inspect.signature(WeightSpaceDiT.__init__).parameters
    width = model.get("hidden_size", defaults["hidden_size"].default)
    heads = model.get("num_heads", defaults["num_heads"].default)

    def count(weights_spec: Any, hidden_size: int) -> int:
        options = {**model, "hidden_size": hidden_size, "num_classes": num_classes}
        return sum(
            parameter.numel() for parameter in WeightSpaceDiT(spec=weights_spec.to_dict(), **options).parameters()
        )

    target = count(reference, width)
    if count(spec, width) == target:
        return dict(model)
    best = min(range(heads, width + 1, heads), key=lambda hidden_size: abs(count(spec, hidden_size) - target))
    return {**model, "hidden_size": best}


__all__ = [
    "base_field",
    "encode_config",
    "generator",
    "matched_mlp_width",
    "matched_transformer_model",
    "weight_dataset",
]
