"""Model cards of the exported fields, rendered from `model_cards/field_card.md` (a Jinja template)."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

from ...resources import card_template
from .config import SECTION, FieldTrainingConfig

TEMPLATE_NAME = "field_card.md"

_MODALITY_TEXT = {
    "image": (
        "coordinates (x, y) in [-1, 1]^2 to RGB in [0, 1]",
        "pixel (row i, column j) of an H x W image sits at its centre, x = (2j + 1) / W - 1, y = (2i + 1) / H - 1",
    ),
    "shape": (
        "points (x, y, z) in [-1, 1]^3 to signed distance, negative inside",
        "shapes live in [-1, 1]^3 (normalised into the ball of radius 0.9); the surface is the zero level set",
    ),
}


def field_card_template() -> Path:
    """The field card template's path; raises if this installation lacks it (checked before training, not after)."""
    return card_template(TEMPLATE_NAME)


def _metric_text(metrics: dict[str, Any]) -> str:
    if "psnr" in metrics:
        return f"mean PSNR {metrics['psnr']:.2f} dB over {metrics['num_instances']} images"
    chamfer = metrics["chamfer"]
    value = "not available (no mesh could be extracted)" if math.isnan(chamfer) else f"{chamfer:.3e}"
    return (
        f"Chamfer distance {value} (mean of squared nearest-neighbour distances both ways, summed) over "
        f"{metrics['chamfer_instances']} shapes, marching cubes at {metrics['eval_resolution']}^3"
    )


def _duration(seconds: float) -> str:
    minutes, seconds = divmod(round(seconds), 60)
    return f"{minutes} min {seconds} s" if minutes else f"{seconds} s"


def write_field_card(
    folder: Path,
    *,
    baked: bool,
    field: Any,
    config: FieldTrainingConfig,
    metrics: dict[str, Any],
    num_classes: int,
    hardware: str,
    codes_path: Path,
) -> Path:
    """Render the card of an exported field (`baked` or modulated) into `folder/README.md` and return its path."""
    import yaml
    from huggingface_hub import ModelCard, ModelCardData

    field_config = field.config
    modality = field_config.modality
    description, coordinates = _MODALITY_TEXT[modality]
    tags = ["hf_wlora", "neural-field", "weight-space-learning", f"{modality}-field", "baked" if baked else "modulated"]
    card_data = ModelCardData(library_name="hf_wlora", tags=tags)
    card = ModelCard.from_template(
        card_data,
        template_path=str(field_card_template()),
        title=f"{'Baked base' if baked else 'Modulated'} neural field ({modality}s, {config.data})",
        baked=baked,
        modality=modality,
        modality_description=description,
        coordinate_text=coordinates,
        hidden_size=field_config.hidden_size,
        num_layers=field_config.num_layers,
        num_fourier_features=field_config.num_fourier_features,
        fourier_type=field_config.fourier_type,
        fourier_scale=field_config.fourier_scale,
        latent_dim=field_config.latent_dim,
        num_parameters=f"{sum(p.numel() for p in field.parameters()):,}",
        data=config.data,
        num_instances=metrics["num_instances"],
        num_classes=num_classes,
        steps=metrics["steps"],
        total_steps=config.total_steps,
        stages=config.stages,
        train_time=_duration(metrics["train_time_s"]),
        hardware=hardware,
        lr_field=config.lr_field,
        lr_codes=config.lr_codes,
        kl_weight=config.kl_weight,
        ema_decay=config.ema_decay,
        metric_text=_metric_text(metrics),
        resolution=config.stages[-1].resolution,
        load_path=folder.as_posix(),
        codes_path=codes_path.as_posix(),
        config_yaml=yaml.safe_dump({SECTION: config.to_dict()}, sort_keys=False),
    )
    path = folder / "README.md"
    card.save(path)
    return path


__all__ = ["field_card_template", "write_field_card"]
