"""`hf-wlora reproduce` at the tiny scale: every study runs for every representation and both modalities, the report
has every table and plot, lambda = 0 gives cosine 1 and barrier 0, and a rerun reuses what is done."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from hf_wlora.cli import main
from hf_wlora.reproduction import ReproduceConfig, reproduce, stages
from hf_wlora.reproduction.config import GENERATION_SYSTEMS, SYSTEMS
from hf_wlora.reproduction.report import (
    agreement,
    agreement_cell,
    barrier_standard_error,
    failed_meshes_note,
    ordering,
    paired_barrier_difference,
    score_cell,
    structure_cell,
)
from hf_wlora.reproduction.runner import RUN_SETTINGS


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory: pytest.TempPathFactory) -> Any:
    folder = tmp_path_factory.mktemp("reproduce")
    return reproduce(ReproduceConfig(scale="tiny", output_dir=str(folder)), progress=False)


def test_the_report_has_every_table_and_plot(tiny_run: Any) -> None:
    report = tiny_run.report_path.read_text()
    for heading in (
        "## 1. Reconstruction (Table 1)",
        "## 2. Weight-space structure (Figure 3)",
        "## 3. Generation",
        "## 4. Discrimination (Table 4) and t-SNE (Figure 5)",
    ):
        assert heading in report
    for name in SYSTEMS:
        assert report.count(f"| `{name}` |") >= 4, name  # reconstruction, two structure tables, discrimination
    assert "Scale `tiny`, seed 0," in report
    assert "| HyperDiffusion (`mlp`) |" in report and "MMD-CD" in report and "MMD-G" in report
    for column in ("FD, learned", "copies", "nearest-training PSNR", "DiT parameters", "numbers per instance"):
        assert column in report, column
    plots = tiny_run.report_path.parent / "plots"
    expected = {f"structure-{m}.png" for m in ("2d", "3d")} | {f"tsne-{m}.png" for m in ("2d", "3d")}
    expected |= {f"samples-{m}-{name}.png" for m in ("2d", "3d") for name in GENERATION_SYSTEMS}
    assert expected <= {path.name for path in plots.iterdir()}
    for name in expected:
        assert f"plots/{name}" in report
    assert "Kendall's tau over 6" in report  # orderings compared with the paper's
    assert "Wall time of all parts: **" in report and "(one run, " in report
    assert "λ=1: cosine / barrier ± s.e." in report and "is the barrier's standard error" in report
    assert "| read as their class (lowest) | the same, copies left out |" in report
    assert "barrier of the Chamfer on 256 points per surface" in report  # the tiny scale's structure_points


def test_structure_at_lambda_zero_refits_the_same_weights(tiny_run: Any) -> None:
    for modality in ("2d", "3d"):
        for name, study in tiny_run.results[modality]["structure"].items():
            first = study["rows"][0]
            assert first["lambda"] == 0.0
            assert first["cosine_mean"] == pytest.approx(1.0, abs=1e-9), (modality, name)
            assert first["barrier_mean"] == 0.0 or first["paths_without_mesh"] == study["instances"], (modality, name)
            for row in study["rows"]:  # each instance's barrier, whose mean is the row's
                values = [value for value in row["barriers"] if value is not None]
                assert len(row["barriers"]) == study["instances"]
                assert len(values) == study["instances"] - row["paths_without_mesh"], (modality, name)
                if values:
                    assert np.mean(values) == pytest.approx(row["barrier_mean"], rel=1e-9, abs=1e-12)
            # lambda = 1: an independent draw of the init distribution, so the fits differ (for mLoRA's N(1, 0.01^2)
            # start only a little: the point of perturbing the random part, not the factors)
            assert study["rows"][-1]["cosine_mean"] < 1 - 1e-6, (modality, name)
        # the cosine leaves the frozen mask entries out: mLoRA's are zeros, which change nothing; lora_asym's are
        # N(0, 1) constants shared by both fits, which pull the cosine over all entries towards 1
        structure = tiny_run.results[modality]["structure"]
        for row in structure["mlora_asym"]["rows"]:
            assert row["cosine_all_mean"] == pytest.approx(row["cosine_mean"], abs=1e-12)
        independent = structure["lora_asym"]["rows"][-1]
        assert independent["cosine_all_mean"] > independent["cosine_mean"] + 0.1, modality


def test_every_study_reports_numbers(tiny_run: Any) -> None:
    two_d, three_d = tiny_run.results["2d"], tiny_run.results["3d"]
    for modality in (two_d, three_d):
        assert set(modality["reconstruction"]["representations"]) == set(SYSTEMS)
        for study in modality["discrimination"].values():
            assert 0 <= study["nn_accuracy"] <= 1 and 0 <= study["logreg_accuracy"] <= 1 and len(study["tsne"]) == 20
    for study in two_d["generation"].values():
        assert study["fd"] >= 0 and study["num_samples"] == 6
        assert study["learned_features"]["fd"] >= 0 and 0 <= study["memorization"]["copy_fraction"] <= 1
        every, new = study["class_agreement"], study["class_agreement_without_copies"]  # the glyphs have classes
        assert every["samples"] == 6 and len(every["per_class"]) == 10 and 0 <= every["accuracy"] <= 1
        assert new["samples"] == 6 - round(6 * study["memorization"]["copy_fraction"])
    extractor = tiny_run.report_path.parent / "2d" / "feature_extractor" / "config.json"
    assert json.loads(extractor.read_text())["kind"] == "classifier"  # the glyphs have classes
    sizes = {name: row["numbers_per_instance"] for name, row in two_d["reconstruction"]["representations"].items()}
    assert sizes["mlora"] == sizes["mlora_asym"] == sizes["lora"] < sizes["mlp"] == sizes["mlp_asym"]
    assert sizes["mlp_matched"] < sizes["mlp"]
    for study in three_d["generation"].values():
        assert study["num_meshes"] <= 6
        if study["num_meshes"] >= 2:  # an untrained tiny generator: only the ranges are known
            assert study["emd_distance"] == "emd_exact"  # no GPU here: the exact solver, recorded with the figures
            for distance in ("chamfer", "emd"):
                assert study[distance]["mmd"] > 0 and 0 < study[distance]["cov"] <= 1
                assert 0 <= study[distance]["1-nna"] <= 1 and 0 <= study[distance]["copy_fraction"] <= 1


def test_sinkhorns_emd_runs_on_the_gpu_it_was_chosen_for(monkeypatch: pytest.MonkeyPatch) -> None:
    """Where a GPU is available the study picks Sinkhorn's EMD for it; the clouds are CPU tensors, so the metrics
    must be told the device, or Sinkhorn runs on the CPU (slower than the exact solver there). Chamfer stays on the
    k-d trees."""
    import torch

    import hf_wlora.metrics
    from hf_wlora.reproduction.studies import ReferencePointClouds, point_cloud_figures

    devices = {}

    def record(samples, references, distance, reference_distances, device):
        devices[distance] = device
        return {"mmd": 0.0}

    monkeypatch.setattr(hf_wlora.metrics, "point_cloud_generation_metrics", record)
    clouds = torch.zeros(3, 16, 3)
    for solver, expected in (("emd", "cuda"), ("emd_exact", None)):
        references = ReferencePointClouds(clouds, 8, solver, {"chamfer": None, "emd": None})
        figures = point_cloud_figures(clouds, references)
        assert devices == {"chamfer": None, solver: expected} and figures["emd_distance"] == solver
        devices.clear()


def test_a_rerun_reuses_everything_and_the_cli_runs_it(tiny_run: Any, capsys: pytest.CaptureFixture[str]) -> None:
    folder = tiny_run.report_path.parent
    generator_metrics = folder / "2d" / "generators" / "mlora_asym" / "metrics.json"
    stamp = generator_metrics.stat().st_mtime_ns
    assert main(["reproduce", "--scale", "tiny", "--output_dir", str(folder), "--modality", "2d"]) == 0
    assert f"report: {folder / 'REPORT.md'}" in capsys.readouterr().out
    assert generator_metrics.stat().st_mtime_ns == stamp  # not retrained
    assert "this invocation took" in (folder / "REPORT.md").read_text()  # the parts' times are the first run's
    rerun = reproduce(ReproduceConfig(scale="tiny", output_dir=str(folder)), progress=False)
    assert json.dumps(rerun.results, sort_keys=True) == json.dumps(tiny_run.results, sort_keys=True)


def test_measuring_a_generator_again_keeps_its_training_time(tiny_run: Any, tmp_path: Path) -> None:
    folder = tmp_path / "again"
    shutil.copytree(tiny_run.report_path.parent, folder)
    trained = tiny_run.results["2d"]["seconds"]["stage 3: train mlora_asym"]
    assert trained > 0
    stored = folder / "2d" / "results" / "generation-mlora_asym.json"
    record = json.loads(stored.read_text())
    del record["result"]["class_agreement"]  # as written before the metric existed: measured again, not retrained
    stored.write_text(json.dumps(record))
    # as written before flat samples counted as unread: measured again too
    other = sorted(set(tiny_run.results["2d"]["generation"]) - {"mlora_asym"})[0]
    stored_other = folder / "2d" / "results" / f"generation-{other}.json"
    record = json.loads(stored_other.read_text())
    del record["result"]["class_agreement"]["unreadable"]
    stored_other.write_text(json.dumps(record))
    # measured with another learned extractor (retrained on other settings in this folder): measured again too
    third = sorted(set(tiny_run.results["2d"]["generation"]) - {"mlora_asym", other})[0]
    stored_third = folder / "2d" / "results" / f"generation-{third}.json"
    record = json.loads(stored_third.read_text())
    extractor = record["result"]["learned_extractor"]
    record["result"]["learned_extractor"] = "another extractor"
    stored_third.write_text(json.dumps(record))
    # sampled before the study recorded its timestep spacing, by a generator exported with diffusers' "leading":
    # sampled again with trailing spacing, which gives the very figures of a generator exported with it
    fourth = sorted(set(tiny_run.results["2d"]["generation"]) - {"mlora_asym", other, third})[0]
    stored_fourth = folder / "2d" / "results" / f"generation-{fourth}.json"
    record = json.loads(stored_fourth.read_text())
    del record["result"]["timestep_spacing"]
    stored_fourth.write_text(json.dumps(record))
    scheduler_file = folder / "2d" / "generators" / fourth / "pipeline" / "scheduler" / "scheduler_config.json"
    scheduler_file.write_text(json.dumps({**json.loads(scheduler_file.read_text()), "timestep_spacing": "leading"}))
    again = reproduce(ReproduceConfig(scale="tiny", output_dir=str(folder)), progress=False)
    assert json.loads(stored_third.read_text())["result"]["learned_extractor"] == extractor
    assert json.loads(stored_fourth.read_text())["result"] == tiny_run.results["2d"]["generation"][fourth]
    assert again.results["2d"]["generation"]["mlora_asym"]["class_agreement"]["samples"] == 6
    assert (
        again.results["2d"]["generation"][other]["class_agreement"]
        == tiny_run.results["2d"]["generation"][other]["class_agreement"]
    )
    assert again.results["2d"]["seconds"]["stage 3: train mlora_asym"] == trained


def test_the_3d_sample_picture_renders_the_first_measured_samples(tiny_run: Any) -> None:
    """The 3-D study renders its picture from the meshes it measures (decoded once): the same picture as decoding the
    first samples apart, pixel for pixel."""
    from PIL import Image

    from hf_wlora.data import open_data_source
    from hf_wlora.pipelines import WeightSpacePipeline, decoded_tiles, picture_scale, tile_grid
    from hf_wlora.reproduction import studies

    config = ReproduceConfig(scale="tiny", output_dir=str(tiny_run.report_path.parent))
    budget = config.budget("3d")
    pipeline = WeightSpacePipeline.from_pretrained(
        tiny_run.report_path.parent / "3d" / "generators" / "mlora_asym" / "pipeline"
    )
    pipeline.set_progress_bar_config(disable=True)
    count = studies.generation_sample_count(budget, len(open_data_source(budget.data, budget.data_options)))
    weights = studies.sample_study_weights(budget, pipeline, count, config.seed)
    shown = {name: value[: studies.PICTURE_SAMPLES] for name, value in weights.items()}
    apart = tile_grid(decoded_tiles(pipeline, shown), 10, picture_scale(pipeline))
    saved = Image.open(tiny_run.report_path.parent / "plots" / "samples-3d-mlora_asym.png")
    assert np.array_equal(np.asarray(saved.convert("RGB")), np.asarray(apart.convert("RGB")))


def test_a_structure_study_measured_on_other_surface_points_is_measured_again(tiny_run: Any, tmp_path: Path) -> None:
    folder = tmp_path / "again"
    shutil.copytree(tiny_run.report_path.parent, folder)
    assert {study["surface_points"] for study in tiny_run.results["3d"]["structure"].values()} == {256}
    assert {study["surface_points"] for study in tiny_run.results["2d"]["structure"].values()} == {None}
    stored = folder / "3d" / "results" / "structure-mlora_asym.json"
    record = json.loads(stored.read_text())
    record["result"]["surface_points"] = 2048  # as a run with other settings wrote it
    record["result"]["rows"] = []
    stored.write_text(json.dumps(record))
    again = reproduce(ReproduceConfig(scale="tiny", output_dir=str(folder), modalities=["3d"]), progress=False)
    assert again.results["3d"]["structure"]["mlora_asym"] == tiny_run.results["3d"]["structure"]["mlora_asym"]


def test_orderings_and_agreement_with_the_paper() -> None:
    ours = {"a": 3.0, "b": 1.0, "c": 2.0, "d": float("nan")}
    assert ordering(ours, higher_is_better=True) == ["a", "c", "b"]
    assert ordering(ours, higher_is_better=False) == ["b", "c", "a"]
    same = agreement(ours, {"a": 30.0, "b": 10.0, "c": 20.0}, higher_is_better=True)
    assert same.endswith("Kendall's tau over 3: +1.00")
    assert agreement(ours, {"a": 1.0, "b": 3.0, "c": 2.0}, higher_is_better=True).endswith("tau over 3: -1.00")
    tied = {"a": 100.0, "b": 100.0, "c": 100.0}
    assert agreement(tied, {"a": 1.0, "b": 3.0, "c": 2.0}, higher_is_better=True).endswith("tau undefined (all tied)")


def test_a_structure_cell_says_how_many_paths_gave_a_barrier() -> None:
    row = {"cosine_mean": 0.9876, "barrier_mean": 0.25, "barrier_std": 0.5, "paths_without_mesh": 0}
    assert structure_cell(row, 5) == "0.988 / 0.25 ± 0.25"  # 0.5 / sqrt(5 - 1)
    assert structure_cell({**row, "paths_without_mesh": 2}, 5) == "0.988 / 0.25 ± 0.35 (3 of 5 paths)"


def test_the_barrier_standard_error_counts_only_paths_with_a_value() -> None:
    # barriers 1, 2, 3, 6 over 6 instances, 2 paths without a mesh: population std sqrt(3.5), sample std sqrt(14 / 3)
    barriers = np.array([1.0, 2.0, 3.0, 6.0])
    row = {"barrier_std": float(barriers.std()), "paths_without_mesh": 2}
    assert barrier_standard_error(row, 6) == pytest.approx(np.sqrt(14 / 3) / 2, rel=1e-12)
    assert barrier_standard_error({"barrier_std": 0.0}, 8) == 0.0
    assert barrier_standard_error({"barrier_std": 0.1, "paths_without_mesh": 5}, 6) is None  # one path: no spread
    assert barrier_standard_error({"barrier_std": float("nan"), "paths_without_mesh": 6}, 6) is None


def test_the_paired_barrier_difference_by_hand() -> None:
    # differences 1 - 2, 4 - 2, 6 - 3 = -1, 2, 3 (instance 3 has no value for the second): mean 4/3, sample variance
    # ((-7/3)^2 + (2/3)^2 + (5/3)^2) / 2 = 13/3, standard error sqrt(13/9)
    first = {"barriers": [1.0, 4.0, 6.0, 5.0]}
    second = {"barriers": [2.0, 2.0, 3.0, None]}
    mean, error, count = paired_barrier_difference(first, second)
    assert mean == pytest.approx(4 / 3) and error == pytest.approx(np.sqrt(13 / 9)) and count == 3
    # a shift shared by every instance cancels: one representation always lower by 1 has no spread in its difference
    assert paired_barrier_difference({"barriers": [3.0, 9.0, 4.0]}, {"barriers": [4.0, 10.0, 5.0]}) == (-1.0, 0.0, 3)
    assert paired_barrier_difference({"barriers": [1.0, None]}, {"barriers": [2.0, 3.0]}) is None  # one pair
    assert paired_barrier_difference({"barrier_mean": 1.0}, {"barriers": [2.0, 3.0]}) is None  # an older result
    with pytest.raises(ValueError, match=r"rows of one lambda, got 0\.5 and 1\.0"):
        paired_barrier_difference({"lambda": 0.5, "barriers": [1.0, 2.0]}, {"lambda": 1.0, "barriers": [2.0, 3.0]})


def test_systems_measured_on_fewer_meshes_are_named_with_their_chance_level() -> None:
    """With S' of S samples meshed and R references, interchangeable sets give 1-NNA (S'(S'-1) + R(R-1)) /
    ((S'+R)(S'+R-1)): 18 and 32 give 1298 / 2450 = 0.53, not 0.5."""
    studies = {
        "mlp": {"num_meshes": 18, "num_samples": 36, "num_references": 32},
        "mlora_asym": {"num_meshes": 36, "num_samples": 36, "num_references": 32},
    }
    (line,) = failed_meshes_note(studies)
    assert "`mlp` 18 of 36 (1-NNA's chance level 0.53)" in line and "mlora_asym" not in line
    assert failed_meshes_note({"mlora_asym": studies["mlora_asym"]}) == []


def test_agreement_cells() -> None:
    found = {"accuracy": 0.75, "per_class": [0.5, 1.0], "lowest_class": 0, "lowest": 0.5, "samples": 8}
    assert agreement_cell(found) == "75% (0: 50%)"
    assert agreement_cell({**found, "unreadable": 0}) == "75% (0: 50%)"
    assert agreement_cell({**found, "unreadable": 3}) == "75% (0: 50%); 3 flat"
    assert agreement_cell({**found, "samples": 0, "accuracy": None}) == "no sample"
    assert agreement_cell(None) == "n/a"


def testscore_cells_name_instances_without_a_score() -> None:
    figures = {"num_instances": 32, "num_non_finite_scores": 0, "score_mean": 0.0123, "score_std": 0.0045}
    assert score_cell(figures) == "0.0123 ± 0.0045"
    assert score_cell({**figures, "num_non_finite_scores": 2}) == "0.0123 ± 0.0045 (2 of 32 without a score)"
    assert score_cell({"num_instances": 32, "num_non_finite_scores": 32}) == "no score for 32 of 32"


@pytest.mark.parametrize(
    ("settings", "message"),
    [
        ({"scale": "huge"}, "scale must be one of"),
        ({"modalities": ["4d"]}, "modalities must be a non-empty subset"),
        ({"representations": ["mlora", "dora"]}, "representations must be a non-empty subset"),
        ({"data_2d": "builtin-shapes"}, "The 2d studies need a image data source"),
        ({"data_3d": "nowhere:x"}, "unknown data source"),
    ],
)
def test_bad_settings_fail_before_any_work(settings: dict[str, Any], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        ReproduceConfig(**settings)


def test_data_with_one_class_skips_discrimination_and_says_why(tmp_path: Path) -> None:
    from PIL import Image

    images = tmp_path / "photos"  # files directly in the folder: one class, nothing to discriminate
    images.mkdir()
    rng = np.random.default_rng(0)
    for index in range(12):
        Image.fromarray(rng.integers(0, 256, (8, 8, 3), dtype=np.uint8)).save(images / f"{index}.png")
    config = ReproduceConfig(
        scale="tiny",
        output_dir=str(tmp_path / "run"),
        modalities=["2d"],
        representations=["lora", "mlora_asym"],
        data_2d=f"image-folder:{images}",
        data_options_2d={"resolution": 8},
    )
    result = reproduce(config, progress=False)
    for study in result.results["2d"]["discrimination"].values():
        assert study == {"skipped": "labels has 1 class(es); discrimination needs at least 2 classes."}
    report = result.report_path.read_text()
    assert "| `mlora_asym` | skipped |" in report and "- 2D: skipped for 2:" in report
    assert "tsne-2d.png" not in report
    assert result.results["2d"]["generation"]["mlora_asym"]["num_samples"] > 0  # the other studies ran


def test_a_local_backbone_replaces_pixel_features_without_retraining(
    tiny_run: Any, tiny_vit: Path, tmp_path: Path
) -> None:
    folder = tmp_path / "copy"
    shutil.copytree(tiny_run.report_path.parent, folder)
    generator_metrics = folder / "2d" / "generators" / "mlora_asym" / "metrics.json"
    stamp = generator_metrics.stat().st_mtime_ns
    settings = {"scale": "tiny", "output_dir": str(folder), "modalities": ["2d"]}

    backbone = reproduce(ReproduceConfig(**settings, image_features=str(tiny_vit)), progress=False)
    assert generator_metrics.stat().st_mtime_ns == stamp  # sampled and measured again, not retrained
    pixels = tiny_run.results["2d"]["generation"]
    for name, study in backbone.results["2d"]["generation"].items():
        assert study["image_features"] == str(tiny_vit) and study["fd"] != pixels[name]["fd"]
        assert study["num_samples"] == pixels[name]["num_samples"]
    assert f"- Features: the backbone at `{tiny_vit}`." in backbone.report_path.read_text()

    again = reproduce(ReproduceConfig(**settings), progress=False)  # back to pixels: the first run's figures
    for name, study in again.results["2d"]["generation"].items():
        assert study["image_features"] == "pixels" and study["fd"] == pixels[name]["fd"]
    assert "- Features: pixels (`PixelFeatures`, 32x32)" in again.report_path.read_text()

    with pytest.raises(ValueError, match="Cannot load a vision backbone from"):
        reproduce(ReproduceConfig(**settings, image_features=str(tmp_path)), progress=False)


def test_the_studies_train_the_learned_features_as_their_default_does() -> None:
    import dataclasses

    from hf_wlora.metrics.learned_features import DEFAULT_TRAINING
    from hf_wlora.reproduction.config import StudyBudget

    default = {field.name: field.default for field in dataclasses.fields(StudyBudget)}["feature_extractor_steps"]
    assert default == DEFAULT_TRAINING["steps"]
    assert ReproduceConfig(scale="small", output_dir="o").budget("2d").feature_extractor_steps == default


def test_the_parameter_matched_mlp_has_about_as_many_numbers_as_mlora_asym(tmp_path: Path) -> None:
    """On the small scale's 64-wide field: a 14-wide mlp, the width whose count is closest to mlora_asym's."""
    from hf_wlora.demo import DEMO_SETTINGS
    from hf_wlora.fields import NeuralFieldConfig, NeuralFieldModel
    from hf_wlora.representations import make_representation

    field = NeuralFieldModel(NeuralFieldConfig(modality="image", **DEMO_SETTINGS["2d"]["train_field"]["model"]))
    field.bake().save_pretrained(tmp_path)
    budget = ReproduceConfig(scale="small", output_dir=str(tmp_path / "out")).budget("2d")
    config = stages.encode_config(budget, "mlp_matched", tmp_path, tmp_path / "weights", seed=0)
    assert config.representation == "mlp" and config.mlp_hidden_size == 14
    baked = field.bake()
    target = make_representation("mlora_asym", baked, rank=4).spec.num_parameters
    counts = {width: make_representation("mlp", baked, hidden_size=width).spec.num_parameters for width in (13, 14, 15)}
    assert counts == {13: 2473, 14: 2719, 15: 2973} and target == 2824  # 14 is the closest: 105 off, 3.7%


def test_every_system_gets_a_transformer_of_mlora_asyms_size() -> None:
    """The small scale's model settings give the mlp's tensor tokens 9.68M parameters and mlora_asym 2.10M: the mlp
    kinds are narrowed to hidden 32 (2.21M, the closest multiple of the 4 heads); the adapter kinds keep 128."""
    from hf_wlora.demo import DEMO_SETTINGS
    from hf_wlora.fields import NeuralFieldConfig, NeuralFieldModel
    from hf_wlora.models import WeightSpaceDiT
    from hf_wlora.representations import make_representation

    field = NeuralFieldModel(NeuralFieldConfig(modality="image", **DEMO_SETTINGS["2d"]["train_field"]["model"])).bake()
    model = ReproduceConfig(scale="small", output_dir="unused").budget("2d").generation["model"]
    reference = make_representation("mlora_asym", field, rank=4).spec

    def count(spec, options) -> int:
        transformer = WeightSpaceDiT(spec=spec.to_dict(), **options, num_classes=10)
        return sum(parameter.numel() for parameter in transformer.parameters())

    for kind, width in (("mlp", 32), ("mlp_asym", 32), ("mlora", 128), ("lora_asym", 128)):
        spec = make_representation(kind, field, rank=4).spec
        matched = stages.matched_transformer_model(model, spec, reference, num_classes=10)
        assert matched == {**model, "hidden_size": width}, kind
    mlp = make_representation("mlp", field, rank=4).spec
    assert count(reference, model) == 2_099_530
    assert count(mlp, model) == 9_684_352 and count(mlp, {**model, "hidden_size": 32}) == 2_212_192


def test_a_folder_run_with_other_settings_is_refused_before_any_work(tiny_run: Any, tmp_path: Path) -> None:
    """Rerunning into a finished folder at another scale or seed would reuse its fields, weights, generators and
    studies and report their numbers under the new settings: refused, naming what differs, before any work."""
    folder = tmp_path / "other"
    shutil.copytree(tiny_run.report_path.parent, folder)
    recorded = json.loads((folder / "3d" / RUN_SETTINGS).read_text())
    assert recorded["scale"] == "tiny" and recorded["seed"] == 0 and recorded["budget"]["data"]
    report = (folder / "REPORT.md").read_bytes()
    for change, message in (({"seed": 1}, "seed: 0 -> 1"), ({"scale": "small"}, "scale: 'tiny' -> 'small'")):
        with pytest.raises(ValueError, match=rf"3d holds a run with other settings \({message}"):
            # the modalities in the order given, every one before any work
            reproduce(ReproduceConfig(**{"scale": "tiny", **change}, output_dir=str(folder), modalities=["3d", "2d"]))
    assert (folder / "REPORT.md").read_bytes() == report
    # nothing recorded for a modality that did not run, although its settings were fine (a new 2-D folder)
    shutil.rmtree(folder / "2d")
    with pytest.raises(ValueError, match=r"3d holds a run with other settings \(seed: 0 -> 1\)"):
        reproduce(ReproduceConfig(scale="tiny", seed=1, output_dir=str(folder), modalities=["2d", "3d"]))
    assert not (folder / "2d").exists()


def test_a_rerun_with_fewer_representations_reports_only_those(tiny_run: Any, tmp_path: Path) -> None:
    folder = tmp_path / "fewer"
    shutil.copytree(tiny_run.report_path.parent, folder)
    chosen = ["mlora", "mlora_asym"]
    config = ReproduceConfig(scale="tiny", output_dir=str(folder), modalities=["3d", "2d"], representations=chosen)
    again = reproduce(config, progress=False)
    for modality in ("2d", "3d"):
        table = again.results[modality]["reconstruction"]["representations"]
        assert set(table) == set(chosen)
        assert table["mlora"] == tiny_run.results[modality]["reconstruction"]["representations"]["mlora"]
    # sizes in the label's order (2-D / 3-D) although the modalities were given 3-D first
    tables = [again.results[modality]["reconstruction"]["representations"] for modality in ("2d", "3d")]
    sizes = [table["mlora"]["numbers_per_instance"] for table in tables]
    assert f"{sizes[0]:,} / {sizes[1]:,} (2-D / 3-D)" in again.report_path.read_text()
