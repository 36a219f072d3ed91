"""The model card of a `WeightSpacePipeline`, rendered from `model_cards/pipeline_card.md` (a Jinja template)."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

from ..resources import card_template

TEMPLATE_NAME = "pipeline_card.md"
CARD_FILE_NAME = "README.md"
SAMPLES_PICTURE = "samples.png"  # a picture of samples, shown in the card when the folder has one
_MODALITY_NOUNS = {"image": "image", "shape": "3-D shape"}
_KIND_TEXT = {
    "mlora": "multiplicative LoRA factors (W ⊙ (alpha / r) B A) on the frozen base field",
    "lora": "additive LoRA factors (W + (alpha / r) B A) on the frozen base field",
    "mlp": "all weights of a standalone field MLP (HyperDiffusion-style)",
}


def _duration(seconds: float) -> str:
    minutes, seconds = divmod(round(seconds), 60)
    return f"{minutes} min {seconds} s" if minutes else f"{seconds} s"


def _training_text(training: dict[str, Any] | None) -> dict[str, Any] | None:
    if not training:
        return None
    loss = training.get("final_loss")
    return {
        **training,
        "train_time": _duration(training.get("train_time_s", 0.0)),
        "final_loss": "n/a" if loss is None or not math.isfinite(loss) else f"{loss:.4g}",
    }


def render_pipeline_card(pipeline: Any, load_path: str, samples_picture: str | None = None) -> Any:
    """The card of `pipeline`; `load_path` is the folder or Hub id users load it from."""
    from huggingface_hub import ModelCard, ModelCardData

    transformer, spec = pipeline.transformer, pipeline.spec
    config = transformer.config
    modality = pipeline.modality
    classes = list(config.class_names or range(config.num_classes))
    rank_text = ", ".join(sorted({f"r = {layer.r}" for layer in spec.layers if layer.r is not None}))
    mask_text = f", asymmetric mask ({spec.mask_ratio:g} of each row frozen)" if spec.asymmetric else ""
    tags = ["hf_wlora", "weight-space", "neural-fields", "diffusion", spec.name, f"{modality}-generation"]
    card = ModelCard.from_template(
        ModelCardData(library_name="hf_wlora", pipeline_tag="unconditional-image-generation", tags=tags)
        if modality == "image"
        else ModelCardData(library_name="hf_wlora", tags=tags),
        template_path=str(card_template(TEMPLATE_NAME)),
        title=f"{spec.name} weight-space diffusion ({_MODALITY_NOUNS.get(modality, modality)}s)",
        modality=modality,
        modality_noun=_MODALITY_NOUNS.get(modality, modality),
        spec=spec,
        spec_text=f"{_KIND_TEXT[spec.kind]} of {len(spec.layers)} layers"
        + (f" ({rank_text})" if rank_text else "")
        + mask_text,
        transformer=config,
        tokenization_text=(
            "hierarchical LoRA layer encoder (one token per rank component, within-layer then cross-layer attention)"
            if transformer.tokens.kind == "rank"
            else f"one token per weight tensor, chunks of at most {config.chunk_size} values (HyperDiffusion-style)"
        ),
        num_transformer_parameters=f"{sum(p.numel() for p in transformer.parameters()):,}",
        conditioning_text=(
            f"class-conditional on {config.num_classes} classes with classifier-free guidance (label dropout "
            f"{config.class_dropout_prob:g})"
            if config.num_classes
            else "unconditional"
        ),
        scheduler_class=type(pipeline.scheduler).__name__,
        scheduler=pipeline.scheduler.config,
        field=pipeline.field.config,
        training=_training_text(config.training),
        samples_picture=samples_picture,
        load_path=load_path,
        classes=classes,
        example_label=repr(classes[0]) if classes else None,
        adapter=spec.kind != "mlp",
        spec_json=spec.to_json_string(),
    )
    return card


def write_pipeline_card(folder: Path, pipeline: Any, load_path: str) -> Path:
    """Render the card into `folder/README.md` (showing `folder/samples.png` if present) and return its path."""
    picture = SAMPLES_PICTURE if (folder / SAMPLES_PICTURE).is_file() else None
    path = folder / CARD_FILE_NAME
    render_pipeline_card(pipeline, load_path, picture).save(path)
    return path


__all__ = ["render_pipeline_card", "write_pipeline_card"]
