"""Small artefacts made in the tests: tiny baked fields (saved or not), a weight data set on one, and a pipeline."""

from __future__ import annotations

from pathlib import Path

import torch
from diffusers import DDPMScheduler

from hf_wlora.encoding import WeightDatasetInfo, WeightDatasetWriter, make_representation, module_fingerprint
from hf_wlora.fields import NeuralFieldConfig, NeuralFieldModel
from hf_wlora.models import WeightSpaceDiT
from hf_wlora.pipelines import WeightSpacePipeline

CLASSES = ["ring", "bar"]
RESOLUTION = 8


def make_field(modality: str = "image") -> NeuralFieldModel:
    """A baked field 16 wide with 2 trunk layers (mlora_asym r=2: 196 numbers per instance)."""
    torch.manual_seed(0)
    config = NeuralFieldConfig(modality=modality, hidden_size=16, num_layers=2, num_fourier_features=8, baked=True)
    return NeuralFieldModel(config).eval()


def save_image_field(folder: Path, seed: int = 0, hidden_size: int = 24, num_layers: int = 2) -> str:
    """Save a baked image field of default Fourier features, seeded, to `folder` (created); return its path."""
    torch.manual_seed(seed)
    config = NeuralFieldConfig(modality="image", hidden_size=hidden_size, num_layers=num_layers)
    NeuralFieldModel(config).bake().save_pretrained(folder)
    return str(folder)


def make_weights(count: int, field: NeuralFieldModel, seed: int = 0) -> dict[str, torch.Tensor]:
    """Two clusters of mlora_asym factors (by class, alternating), with the mask's frozen entries in place."""
    representation = make_representation("mlora_asym", field, rank=2)
    spec = representation.spec
    start = spec.flatten(representation.initial_factors())
    generator = torch.Generator().manual_seed(seed)
    direction = torch.randn(spec.num_parameters, generator=generator)
    labels = torch.arange(count) % 2
    vectors = (
        start
        + 0.3 * (2 * labels[:, None] - 1) * direction
        + 0.05 * torch.randn(count, start.numel(), generator=generator)
    )
    frozen, values = spec.frozen_entries()
    vectors = torch.where(frozen, values, vectors)
    return {"vectors": vectors, "labels": labels}


def write_weight_dataset(folder: Path, field_dir: Path, count: int = 24, seed: int = 0) -> Path:
    """A finalized weight data set of `count` instances on the field saved at `field_dir`."""
    field = NeuralFieldModel.from_pretrained(field_dir)
    data = make_weights(count, field, seed)
    spec = make_representation("mlora_asym", field, rank=2).spec
    info = WeightDatasetInfo(
        spec=spec,
        modality="image",
        base_field=str(field_dir),
        base_field_sha256=module_fingerprint(field),  # as the encoder records it
        class_names=CLASSES,
        encoding={"steps": 20, "learning_rate": 0.01, "seed": 0, "data_options": {"resolution": RESOLUTION}},
    )
    writer = WeightDatasetWriter(folder, info)
    writer.write(
        [f"item-{index:03d}" for index in range(count)],
        data["labels"].tolist(),
        spec.unflatten(data["vectors"]),
        torch.full((count,), 30.0),
        indices=list(range(count)),
    )
    return writer.finalize()


def make_pipeline(
    num_classes: int = 2, modality: str = "image", representation: str = "mlora_asym", **scheduler_options
) -> WeightSpacePipeline:
    """An untrained pipeline (random adaLN and output maps, so samples depend on everything) on a tiny field."""
    field = make_field(modality)
    spec = make_representation(representation, field, rank=2).spec
    if representation == "mlora_asym":
        vectors = make_weights(12, field)["vectors"]
    else:  # weights around the standalone field's own, for the mlp kinds
        start = spec.flatten(make_representation(representation, field).initial_factors())
        vectors = start + 0.05 * torch.randn(12, start.numel(), generator=torch.Generator().manual_seed(0))
    torch.manual_seed(0)
    transformer = WeightSpaceDiT(
        spec.to_dict(),
        hidden_size=32,
        num_layers=2,
        num_heads=4,
        num_classes=num_classes,
        class_names=CLASSES[:num_classes] if num_classes else None,
        encoding={"steps": 15, "learning_rate": 0.01, "seed": 0},
    ).eval()
    with torch.no_grad():
        for parameter in transformer.parameters():
            if not parameter.abs().sum():
                parameter.copy_(0.05 * torch.randn(parameter.shape))
    transformer.set_normalization(vectors)
    scheduler_options = {"timestep_spacing": "trailing", **scheduler_options}  # as training builds it
    scheduler = DDPMScheduler(
        num_train_timesteps=100, beta_schedule="squaredcos_cap_v2", clip_sample=False, **scheduler_options
    )
    pipeline = WeightSpacePipeline(transformer, scheduler, field, resolution=RESOLUTION, mesh_resolution=12)
    pipeline.set_progress_bar_config(disable=True)
    return pipeline
