"""The shipped recipes describe whole pipelines that work: each file's three sections fit together (the paths chain
from stage to stage, the encoding's rank fits the field, the transformer fits the weights), and the built-in
recipe runs end to end."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
import yaml

from hf_wlora import EncodeConfig, GeneratorTrainingConfig, NeuralFieldModel, WeightSpaceDiT, make_representation
from hf_wlora.fields.auto_decoder import FieldTrainingConfig, train_field
from hf_wlora.pipelines.generator_training import train_generator

ROOT = Path(__file__).parent.parent
RECIPES = sorted((ROOT / "recipes" / "configs").glob("*.yaml"))


@pytest.mark.parametrize("path", RECIPES, ids=lambda path: path.stem)
def test_a_recipe_chains_its_three_stages(path: Path) -> None:
    field_training = FieldTrainingConfig.from_yaml(path)
    encoding = EncodeConfig.from_yaml(path)
    generation = GeneratorTrainingConfig.from_yaml(path)
    # each stage reads what the one before writes, on the same data
    assert encoding.field == f"{field_training.output_dir}/field"
    assert generation.weights == encoding.output_dir
    assert encoding.data == field_training.data
    shared = set(encoding.data_options) & set(field_training.data_options)
    assert all(encoding.data_options[key] == field_training.data_options[key] for key in shared)
    # the encoding's representation exists on the field this recipe trains, and the transformer accepts its spec
    field = NeuralFieldModel(field_training.field_config()).bake()
    spec = make_representation(encoding.representation, field, rank=encoding.rank).spec
    transformer = WeightSpaceDiT(spec.to_dict(), **generation.model, num_classes=10)
    assert transformer.num_parameters == sum(torch.Size(shape).numel() for shape in spec.factor_shapes().values())


def test_the_builtin_recipe_runs_end_to_end(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    recipe = yaml.safe_load((ROOT / "recipes" / "configs" / "glyphs.yaml").read_text())
    small = {"num_instances": 4, "resolution": 32, "seed": 0}
    recipe["train_field"].update(data_options=small, checkpoint_every=2)
    recipe["encode"].update(data_options=small, steps=2, batch_size=4)
    recipe["train"].update(steps=3, warmup_steps=1, batch_size=4, checkpoint_every=3, sample_every=None)
    recipe["train"]["num_grid_samples"] = 2
    path = tmp_path / "glyphs.yaml"
    path.write_text(yaml.safe_dump(recipe))
    monkeypatch.chdir(tmp_path)  # the recipe's paths are relative: outputs/glyphs/...

    field = train_field(FieldTrainingConfig.from_yaml(path, max_steps=2))
    assert field.field_dir == Path("outputs/glyphs/field") and field.metrics["psnr"] > 0
    from hf_wlora import encode

    weights = encode(EncodeConfig.from_yaml(path), progress=False)
    assert weights.output_dir == Path("outputs/glyphs/weights-mlora_asym") and weights.figures["num_instances"] == 4
    generator = train_generator(GeneratorTrainingConfig.from_yaml(path))
    assert (generator.pipeline_dir / "model_index.json").is_file() and generator.step == 3
