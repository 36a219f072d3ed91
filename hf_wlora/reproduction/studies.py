"""The paper's four studies, each a function of the encoded weight data sets (and, for generation, a trained
generator): reconstruction (Table 1), weight-space structure against lambda (Figure 3), generation (the generation
table), discrimination with t-SNE (Table 4, Figure 5). Each returns plain JSON-serialisable results.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from .config import StudyBudget
from .stages import encode_config

if TYPE_CHECKING:
    from ..metrics import ImageFeatureExtractor, LearnedImageFeatures

# Pictures of samples: at most this many instances per system.
PICTURE_SAMPLES = 20


def reconstruction_study(weights_dirs: dict[str, Path]) -> dict[str, Any]:
    """Table 1: every representation's reconstruction figures, as its encoding measured them, and its size (numbers
    per instance)."""
    from ..encoding import load_weight_dataset

    rows = {}
    for name, folder in weights_dirs.items():
        weights = load_weight_dataset(folder)
        rows[name] = {
            "score": weights.info.score_name,
            "numbers_per_instance": weights.spec.num_parameters,
            **weights.info.splits["train"],
        }
    return {"representations": rows}


def structure_study(
    budget: StudyBudget, representation_name: str, field_dir: Path, seed: int, progress: bool = False
) -> dict[str, Any]:
    """Figure 3: fit the same instances from an initialisation i1 and from a correlated i2.

    i1 = mu + sigma * xi1 is where the encoding starts every instance (seeded factors; for the mlp kinds the first
    instance's fit), and i2 = mu + sigma * xi2 with xi2 = sqrt(1 - lambda^2) xi1 + lambda eps perturbs its random
    part only (`Representation.init_distribution`: mLoRA's N(1, init_std^2) entries, additive LoRA's A; for the mlp
    kinds zero-mean with each tensor's default-init std), so lambda = 1 is an independent draw from the same init
    distribution. For every lambda: the cosine similarity of the two fits, and the barrier of the reconstruction
    metric (PSNR in 2-D, Chamfer on `budget.structure_points` points per surface in 3-D) along the straight line
    between them, averaged over the instances. The asymmetric mask's frozen entries stay frozen in i2, so lambda = 0
    refits exactly the same weights (cosine 1, barrier 0).

    The cosine ("cosine_mean") is taken over the trained entries: the frozen ones are the same constants in both fits
    (and in every instance), so including them measures the mask's norm rather than whether the fits agree; with
    the additive masks' N(0, kappa^2) entries it pushes any two fits towards 1. "cosine_all_mean" includes them.
    """
    from tqdm.auto import tqdm

    from ..data import open_data_source
    from ..metrics import correlated_initialization, cosine_similarity, interpolation_barrier, interpolation_weights
    from ..representations import fit_instances, instance_targets, load_base_field, reconstruction_scores
    from ..training.step_draws import mix_seed

    config = encode_config(budget, representation_name, field_dir, field_dir / "unused", seed)
    base = load_base_field(config.field, config.field_subfolder, config.field_revision)
    source = open_data_source(budget.data, budget.data_options)
    representation = config.build_representation(base, source)
    spec, modality = representation.spec, representation.modality
    count, alphas = min(budget.structure_instances, len(source)), budget.structure_alphas
    indices = list(range(count))
    instances = [source[index] for index in indices]
    coords, targets = instance_targets(instances, modality, config.points_per_shape, indices)
    settings = config.fit_settings()
    start, laws = representation.initial_factors(), representation.init_distribution()
    first = spec.flatten(fit_instances(representation, coords, targets, settings, initial=start).factors)
    trained = ~spec.frozen_entries()[0]  # the entries a fit chooses; the mask's frozen ones are equal in every fit
    # along each path, instance k is evaluated at every alpha: repeat its data
    path_instances = [instance for instance in instances for _ in range(alphas)]
    path_coords = coords if coords.dim() == 2 else coords.repeat_interleave(alphas, dim=0)
    path_targets = targets.repeat_interleave(alphas, dim=0)

    rows = []
    lambdas = tqdm(budget.structure_lambdas, desc=f"structure {representation_name}", disable=not progress)
    for index, lam in enumerate(lambdas):
        generator = torch.Generator().manual_seed(mix_seed(seed, index, 0x5717))
        second_start = correlated_initialization(start, lam, generator, frozen=spec.masks(), distribution=laws)
        fitted = fit_instances(representation, coords, targets, settings, initial=second_start).factors
        second = spec.flatten(fitted)
        cosines = cosine_similarity(first[:, trained], second[:, trained])
        cosines_all = cosine_similarity(first, second)
        paths = torch.stack([interpolation_weights(first[k], second[k], alphas) for k in range(count)])
        scores = reconstruction_scores(
            representation,
            spec.unflatten(paths.reshape(count * alphas, -1).float()),
            path_instances,
            path_coords,
            path_targets,
            config.mesh_resolution,
            config.seed,
            budget.structure_points,
        ).reshape(count, alphas)
        barriers = np.array(
            [
                interpolation_barrier(torch.as_tensor(path), higher_is_better=modality == "image")
                if np.isfinite(path).all()
                else math.nan
                for path in scores
            ]
        )
        rows.append(
            {
                "lambda": lam,
                "cosine_mean": float(cosines.mean()),
                "cosine_std": float(cosines.std(unbiased=False)),
                "cosine_all_mean": float(cosines_all.mean()),
                "barrier_mean": _nanmean(barriers),
                "barrier_std": float(np.nanstd(barriers)) if np.isfinite(barriers).any() else math.nan,
                "endpoint_score_mean": _nanmean(scores[:, [0, -1]]),
                "paths_without_mesh": int((~np.isfinite(barriers)).sum()),
                # per instance (None: no value), so two representations can be compared instance by instance
                "barriers": [float(value) if math.isfinite(value) else None for value in barriers],
            }
        )
    return {
        "representation": representation_name,
        "instances": count,
        "alphas": alphas,
        "metric": "psnr" if modality == "image" else "chamfer",
        "surface_points": structure_surface_points(budget),
        "rows": rows,
    }


def structure_surface_points(budget: StudyBudget) -> int | None:
    """The points per surface of the structure study's Chamfer distances (None in 2-D: PSNR on every pixel)."""
    return budget.structure_points if budget.modality == "shape" else None


def reference_images(budget: StudyBudget) -> tuple[torch.Tensor, list[int]]:
    """The 2-D data set's images (N, H, W, 3) and class labels (-1 for an instance without one)."""
    from ..data import open_data_source

    source = open_data_source(budget.data, budget.data_options)
    instances = [source[index] for index in range(len(source))]
    images = torch.stack([torch.as_tensor(instance.image) for instance in instances])
    return images, [-1 if instance.label is None else int(instance.label) for instance in instances]


def learned_extractor(budget: StudyBudget, cache_dir: Path, seed: int) -> LearnedImageFeatures:
    """The 2-D data set's learned feature extractor (a classifier when it is labelled), trained once into
    `cache_dir` and reloaded from there by every later system and run."""
    from ..metrics import learned_image_features

    images, labels = reference_images(budget)
    return learned_image_features(images, labels, seed=seed, cache_dir=cache_dir, steps=budget.feature_extractor_steps)


def generation_sample_count(budget: StudyBudget, num_references: int) -> int:
    """Samples per generating system: the budget's `generation_samples`, or 1.1x the references (HyperDiffusion's
    protocol)."""
    return budget.generation_samples or math.ceil(1.1 * num_references)


# How the study's samplers space their timesteps (results without this record were sampled from diffusers' "leading"
# spacing, and in 3-D counted Chamfer copies at half the squared distance: `runner` measures them again)
SAMPLING_TIMESTEP_SPACING = "trailing"


def study_sample_labels(pipeline: Any, count: int) -> list[int] | None:
    """The classes the generation study draws its `count` samples for: balanced over a class-conditional
    transformer's classes (sample k gets class k mod the number of classes), None for an unconditional one."""
    num_classes = pipeline.transformer.config.num_classes
    return [index % num_classes for index in range(count)] if num_classes else None


def sample_study_weights(budget: StudyBudget, pipeline: Any, count: int, seed: int) -> dict[str, torch.Tensor]:
    """`count` weight samples of a trained pipeline as the generation study draws them: class-balanced
    (`study_sample_labels`) with the budget's guidance for a class-conditional transformer, unguided otherwise."""
    labels = study_sample_labels(pipeline, count)
    return pipeline(
        count,
        class_labels=labels,
        guidance_scale=budget.guidance_scale if labels else 1.0,
        num_inference_steps=budget.sampling_steps,
        generator=torch.Generator().manual_seed(seed),
        output_type="weights",
    ).weights


def generation_study(
    budget: StudyBudget,
    pipeline_dir: Path,
    picture_path: Path,
    seed: int,
    image_features: ImageFeatureExtractor | None = None,
    learned_features: ImageFeatureExtractor | None = None,
    point_cloud_references: ReferencePointClouds | None = None,
) -> dict[str, Any]:
    """The generation table: sample a trained pipeline (class-balanced, with guidance for conditional models) and
    compare the samples with the data set. In 2-D: FD and MMD (Gaussian and polynomial kernels) on `image_features`
    (pixels by default) and, under "learned_features", on `learned_features` (the study's `learned_extractor`;
    skipped when None), the memorisation figures under "memorization", and for a class-conditional transformer how
    often `learned_features` (a classifier) reads each sample as its class (`image_generation_figures`). In 3-D:
    MMD, COV, 1-NNA and the copy fraction over Chamfer (and EMD) distances of 2,048-point clouds (HyperDiffusion's
    protocol), against `point_cloud_references` (`reference_point_clouds`, computed here when None).
    """
    import json

    from ..data import open_data_source
    from ..pipelines import WeightSpacePipeline, decoded_tiles, picture_scale, tile_grid

    pipeline = WeightSpacePipeline.from_pretrained(pipeline_dir)
    pipeline.set_progress_bar_config(disable=True)
    if pipeline.scheduler.config.get("timestep_spacing") != SAMPLING_TIMESTEP_SPACING:
        # a generator exported before training set trailing spacing: sampled as the newer ones, from t = T - 1
        scheduler_config = pipeline.scheduler.config
        pipeline.scheduler = type(pipeline.scheduler).from_config(
            scheduler_config, timestep_spacing=SAMPLING_TIMESTEP_SPACING
        )
    source = open_data_source(budget.data, budget.data_options)
    count = generation_sample_count(budget, len(source))
    weights = sample_study_weights(budget, pipeline, count, seed)
    results: dict[str, Any] = {
        "timestep_spacing": SAMPLING_TIMESTEP_SPACING,
        "num_samples": count,
        "num_references": len(source),
        "generator": json.loads((pipeline_dir.parent / "metrics.json").read_text()),
    }
    if pipeline.modality == "image":
        shown = {name: value[:PICTURE_SAMPLES] for name, value in weights.items()}
        tile_grid(decoded_tiles(pipeline, shown), 10, picture_scale(pipeline)).save(picture_path)
        references, _ = reference_images(budget)
        images = pipeline.decode(weights, "pt", resolution=references.shape[1]).images
        from ..metrics import image_generation_figures

        labels = study_sample_labels(pipeline, count)
        figures = image_generation_figures(images, references, image_features, learned_features, labels)
        # an unconditional transformer's samples have no class to read: recorded as not measured
        return {"class_agreement": None, "class_agreement_without_copies": None, **results, **figures}
    from ..fields import render_meshes
    from ..metrics import sample_point_clouds

    decoded = pipeline.decode(weights, "mesh").meshes
    # the picture renders the first of these meshes: decoding them again took longer than rendering them
    tile_grid(render_meshes(decoded[:PICTURE_SAMPLES]), 10, picture_scale(pipeline)).save(picture_path)
    meshes = [mesh for mesh in decoded if mesh is not None]
    results["num_meshes"] = len(meshes)
    if len(meshes) < 2:  # the metrics need two samples at least; the report says none could be measured
        return results
    references = point_cloud_references or reference_point_clouds(budget)
    samples = sample_point_clouds(meshes, budget.point_cloud_points, seed=seed)
    return {**results, **point_cloud_figures(samples, references)}


def point_cloud_figures(samples: torch.Tensor, references: ReferencePointClouds) -> dict[str, Any]:
    """MMD, COV, 1-NNA and the copy fraction of sample clouds (S, P, 3) against the references, over Chamfer
    ("chamfer") and EMD ("emd", on the first `references.emd_points` points of every cloud)."""
    from ..metrics import point_cloud_generation_metrics

    results: dict[str, Any] = {}
    for name, distance in (("chamfer", "chamfer"), ("emd", references.emd_distance)):
        results[name] = point_cloud_generation_metrics(
            samples[:, references.subset(name)],
            references.clouds[:, references.subset(name)],
            distance=distance,
            reference_distances=references.distances[name],
            device=references.device(name),
        )
    results["emd_points"] = references.emd_points
    results["emd_distance"] = references.emd_distance
    return results


@dataclass
class ReferencePointClouds:
    """The 3-D data set's reference clouds and their own distance matrices, shared by every generator's study.

    Attributes:
        clouds: (R, point_cloud_points, 3) surface samples of every instance.
        emd_points: Points of each cloud the EMD compares (a prefix, a random subset: the points are in random order).
        emd_distance: "emd" (Sinkhorn, on the GPU where one is available) or "emd_exact" (the assignment solver,
            faster on a CPU); the study's figures record which.
        distances: The references' (R, R) matrices, "chamfer" and "emd" (the exact EMD's with each row's minimum
            exact and lower bounds elsewhere, all the metrics read: `point_cloud_distances(nearest_only=True)`).
    """

    clouds: torch.Tensor
    emd_points: int
    emd_distance: str
    distances: dict[str, torch.Tensor]

    def subset(self, name: str) -> slice:
        """The points of each cloud the distance `name` compares."""
        return slice(0, self.emd_points) if name == "emd" else slice(None)

    def device(self, name: str) -> str | None:
        """Where the distance `name` is computed: Sinkhorn's EMD on the GPU it was chosen for (the clouds are CPU
        tensors, so without it Sinkhorn would run on the CPU, slower than the exact solver); the rest where the clouds
        are (k-d trees, the assignment solver)."""
        return "cuda" if name == "emd" and self.emd_distance == "emd" else None


def reference_clouds(budget: StudyBudget) -> torch.Tensor:
    """The 3-D data set's surface samples (R, point_cloud_points, 3), instance i's drawn with seed i."""
    from ..data import open_data_source, sample_surface

    source = open_data_source(budget.data, budget.data_options)
    return torch.stack(
        [
            torch.as_tensor(sample_surface(source[index], budget.point_cloud_points, seed=index), dtype=torch.float32)
            for index in range(len(source))
        ]
    )


def reference_point_clouds(budget: StudyBudget) -> ReferencePointClouds:
    """Sample the 3-D data set's reference clouds (HyperDiffusion's protocol) and compute their own Chamfer and EMD
    matrices once: every generator of a study is compared with the same references."""
    from ..metrics import point_cloud_distances

    clouds = reference_clouds(budget)
    # EMD: Sinkhorn on a GPU; on a CPU the exact assignment solver is faster (3.5x at 2,048 points)
    emd = "emd" if torch.cuda.is_available() else "emd_exact"
    emd_points = clouds[:, : budget.emd_points].shape[1]
    references = ReferencePointClouds(clouds, emd_points, emd, {})
    references.distances["chamfer"] = point_cloud_distances(clouds, distance="chamfer")
    # the exact EMD's own matrix only where the metrics read it: each reference's nearest other reference
    references.distances["emd"] = point_cloud_distances(
        clouds[:, :emd_points], distance=emd, nearest_only=emd == "emd_exact", device=references.device("emd")
    )
    return references


def discrimination_study(weights_dir: Path, seed: int) -> dict[str, Any]:
    """Table 4 and Figure 5: k-means ARI, held-out 1-NN and logistic-regression accuracy of the flat weights, and
    their t-SNE embedding (for the report's figure)."""
    from threadpoolctl import threadpool_limits

    from ..encoding import load_weight_dataset
    from ..metrics import discrimination_metrics, tsne_embedding

    weights = load_weight_dataset(weights_dir)
    labels = weights.labels.numpy()
    labelled = labels >= 0  # -1: an instance without a class
    if not labelled.any():
        return {"skipped": "no instance of the data has a class label"}
    features = weights.spec.flatten(weights.stacked_factors()).numpy()[labelled]
    labels = labels[labelled]
    # scikit-learn's OpenMP and BLAS pools next to torch's idle, spinning one slowed k-means and t-SNE 100-fold on 2
    # cores (40 s instead of 0.3 s on 20 instances); one thread is plenty at these sizes
    with threadpool_limits(limits=1):
        try:
            metrics = discrimination_metrics(features, labels, seed=seed)
        except ValueError as error:  # one class only, or classes too small for a held-out split
            return {"skipped": str(error)}
        results = {**metrics, "labels": labels.tolist(), "class_names": weights.info.class_names}
        try:
            results["tsne"] = tsne_embedding(features, seed=seed).tolist()
        except ValueError as error:  # e.g. a representation whose fits all stayed at the shared start
            results["tsne"], results["tsne_error"] = None, str(error)
    return results


def _nanmean(values: np.ndarray) -> float:
    finite = np.asarray(values, dtype=np.float64)
    finite = finite[np.isfinite(finite)]
    return float(finite.mean()) if finite.size else math.nan


__all__ = [
    "ReferencePointClouds",
    "discrimination_study",
    "generation_sample_count",
    "generation_study",
    "learned_extractor",
    "point_cloud_figures",
    "reconstruction_study",
    "reference_clouds",
    "reference_images",
    "reference_point_clouds",
    "sample_study_weights",
    "structure_study",
    "structure_surface_points",
    "study_sample_labels",
]
