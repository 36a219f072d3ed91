"""`reproduce`: run the four studies for every representation and modality, then write `REPORT.md`.

Per modality: train the base field, encode the data as each of the six representations, then the studies. Every
stage and every study's result is kept in the output folder (`{modality}/results/{study}.json`, with its wall
time), so rerunning an interrupted run skips what is done and resumes what was in progress.
"""

from __future__ import annotations

import functools
import json
import logging
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..differences import setting_differences
from ..files import write_text_atomic
from . import stages, studies
from .config import GENERATION_SYSTEMS, ReproduceConfig
from .report import PIXEL_FEATURES, PLOTS_DIR, write_report

if TYPE_CHECKING:
    from ..metrics import ImageFeatureExtractor

logger = logging.getLogger(__name__)

# Under each 2-D modality folder: the learned feature extractor of its data set (`studies.learned_extractor`).
LEARNED_FEATURES_DIR = "feature_extractor"
# Under each modality folder: the scale, seed and budget its stages and studies ran with (`check_run_settings`).
RUN_SETTINGS = "run_settings.json"


@dataclass
class ReproduceResult:
    """Where the report is, and every study's results per modality."""

    report_path: Path
    results: dict[str, Any]


def _cached(
    path: Path,
    compute: Callable[[], Any],
    seconds: dict[str, float],
    part: str,
    still_valid: Callable[[Any], bool] = lambda result: True,
) -> Any:
    """The JSON result at `path`, computed (and its wall time recorded) only if no earlier run wrote a valid one."""
    if path.is_file():
        stored = json.loads(path.read_text())
        if still_valid(stored["result"]):
            seconds[part] = stored["seconds"]
            return stored["result"]
    start = time.perf_counter()
    result = compute()
    seconds[part] = time.perf_counter() - start
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps({"seconds": seconds[part], "result": result}) + "\n")
    return result


def _timed(compute: Callable[[], Any], path: Path, seconds: dict[str, float], part: str) -> Any:
    """Run a stage (which skips or resumes itself) and record its wall time the first time it does work."""
    record = json.loads(path.read_text()) if path.is_file() else {}
    start = time.perf_counter()
    value = compute()
    elapsed = time.perf_counter() - start
    if part not in record:
        record[part] = elapsed
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(record, indent=2) + "\n")
    seconds[part] = record[part]
    return value


def _modality(
    config: ReproduceConfig, modality: str, folder: Path, progress: bool, image_features: ImageFeatureExtractor | None
) -> dict[str, Any]:
    budget, seed = config.budget(modality), config.seed
    results_dir, timings = folder / "results", folder / "results" / "stage_seconds.json"
    seconds: dict[str, float] = {}
    field_dir = _timed(lambda: stages.base_field(budget, folder, seed), timings, seconds, "stage 1: base field")
    weights = {
        name: _timed(
            lambda name=name: stages.weight_dataset(budget, name, field_dir, folder, seed),
            timings,
            seconds,
            f"stage 2: encode {name}",
        )
        for name in config.representations
    }
    found: dict[str, Any] = {"seconds": seconds}
    found["reconstruction"] = _cached(
        results_dir / "reconstruction.json",
        lambda: studies.reconstruction_study(weights),
        seconds,
        "reconstruction",
        # results written before the table gave each representation's size, or for other representations (a rerun
        # that adds some): read the encodings again
        still_valid=lambda result: (
            set(result["representations"]) == set(weights)
            and all("numbers_per_instance" in row for row in result["representations"].values())
        ),
    )
    found["structure"] = {
        name: _cached(
            results_dir / f"structure-{name}.json",
            lambda name=name: studies.structure_study(budget, name, field_dir, seed, progress),
            seconds,
            f"structure {name}",
            # studies written before the cosine left the frozen mask entries out, or (3-D) with another number of
            # surface points per Chamfer, are measured again
            still_valid=lambda result: (
                all("cosine_all_mean" in row for row in result["rows"])
                and result.get("surface_points") == studies.structure_surface_points(budget)
            ),
        )
        for name in config.representations
    }
    plots = folder.parent / PLOTS_DIR
    plots.mkdir(parents=True, exist_ok=True)

    features = (config.image_features or PIXEL_FEATURES) if modality == "2d" else None
    learned = functools.cache(lambda: studies.learned_extractor(budget, folder / LEARNED_FEATURES_DIR, seed))
    point_clouds = functools.cache(lambda: studies.reference_point_clouds(budget))  # shared by the 3-D systems

    systems = [name for name in GENERATION_SYSTEMS if name in config.representations]
    # the transformers' training is a stage of its own, like stages 1 and 2: measuring a stored generator's samples
    # again then keeps the time it took to train
    pipelines = {
        name: _timed(
            lambda name=name: stages.generator(budget, weights[name], folder, seed),
            timings,
            seconds,
            f"stage 3: train {name}",
        )
        for name in systems
    }

    def generation(name: str) -> dict[str, Any]:
        picture = plots / f"samples-{modality}-{name}.png"
        result = studies.generation_study(
            budget,
            pipelines[name],
            picture,
            seed,
            image_features=image_features,
            learned_features=learned() if modality == "2d" else None,
            point_cloud_references=point_clouds() if modality == "3d" else None,
        )
        if features is None:
            return result
        return {**result, "image_features": features, "learned_extractor": learned().config["fingerprint"]}

    def still_valid(result: dict[str, Any]) -> bool:
        """A stored result measured with other features (another learned extractor included: one retrained on other
        settings in the same folder), or before a metric existed (or before flat samples counted as unread), is
        sampled and measured again (no retraining of its generator); so is one sampled with another timestep spacing
        than the study's (before it recorded one: diffusers' "leading", and in 3-D the former Chamfer copy rule)."""
        if result.get("timestep_spacing") != studies.SAMPLING_TIMESTEP_SPACING:
            return False
        if features is None:  # 3-D ("chamfer" is missing when fewer than two meshes could be extracted)
            return "chamfer" not in result or "copy_fraction" in result["chamfer"]
        agreement = result.get("class_agreement", {})  # None: nothing to read (no classes, or no classifier)
        measured = "learned_features" in result and (agreement is None or "unreadable" in agreement)
        same_features = result.get("image_features", PIXEL_FEATURES) == features
        return same_features and measured and result.get("learned_extractor") == learned().config["fingerprint"]

    found["generation"] = {
        name: _cached(
            results_dir / f"generation-{name}.json",
            lambda name=name: generation(name),
            seconds,
            f"generation {name}",
            still_valid=still_valid,
        )
        for name in systems
    }
    found["discrimination"] = {
        name: _cached(
            results_dir / f"discrimination-{name}.json",
            lambda name=name: studies.discrimination_study(weights[name], seed),
            seconds,
            f"discrimination {name}",
        )
        for name in config.representations
    }
    return found


def check_run_settings(folder: Path, config: ReproduceConfig, modality: str) -> dict[str, Any]:
    """Refuse a modality folder whose stages and studies ran at another scale, seed or budget (its data included):
    a rerun would reuse them and report their numbers under these settings. Returns the settings, which a folder's
    first run records (`RUN_SETTINGS`); a folder from before the record is taken as it is."""
    budget = asdict(config.budget(modality))
    settings = json.loads(json.dumps({"scale": config.scale, "seed": config.seed, "budget": budget}, default=str))
    path = folder / RUN_SETTINGS
    if path.is_file():
        recorded = json.loads(path.read_text())
        first = ("scale", "seed")  # named before the budget's keys, which follow from the scale
        differences = [
            *setting_differences({key: recorded.get(key) for key in first}, {key: settings[key] for key in first}),
            *setting_differences(recorded.get("budget", {}), settings["budget"], prefix="budget."),
        ]
        if differences:
            raise ValueError(
                f"{folder} holds a run with other settings ({'; '.join(differences[:5])}"
                f"{'; ...' if len(differences) > 5 else ''}): its stages and studies would be reused and reported "
                "under these. Use another --output_dir, or the settings it was run with."
            )
    return settings


def reproduce(config: ReproduceConfig, progress: bool = True) -> ReproduceResult:
    """Run the paper's studies at `config.scale` and write `REPORT.md` into `config.output_dir`."""
    folder = Path(config.output_dir)
    # every modality before any work (not a refusal after hours of the first), and recorded only once all agree
    settings = {modality: check_run_settings(folder / modality, config, modality) for modality in config.modalities}
    for modality, values in settings.items():
        if not (folder / modality / RUN_SETTINGS).is_file():
            write_text_atomic(folder / modality / RUN_SETTINGS, json.dumps(values, indent=2, sort_keys=True) + "\n")
    start = time.perf_counter()
    image_features = None
    if config.image_features is not None and "2d" in config.modalities:
        from ..metrics import TransformersImageFeatures

        image_features = TransformersImageFeatures(config.image_features)  # a bad backbone fails now, not after hours
    results = {}
    for modality in config.modalities:
        logger.info("reproduce: %s studies", modality)
        results[modality] = _modality(config, modality, folder / modality, progress, image_features)
    report = write_report(folder, config, results, time.perf_counter() - start)
    return ReproduceResult(report, results)


__all__ = ["RUN_SETTINGS", "ReproduceResult", "check_run_settings", "reproduce"]
