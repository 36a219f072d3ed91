"""Metrics of the paper's studies (Yang et al., arXiv 2512.01759) and HyperDiffusion's 3-D protocol; a leaf package
anyone may import.

- reconstruction: `psnr` (`psnr_from_mse`), `chamfer_distance`, `surface_chamfer` (a mesh against its true surface);
  images: `ssim`;
- image generation: `image_generation_figures` (all of the study's figures), `image_generation_metrics`
  (`frechet_distance`, `mmd` with Gaussian or polynomial kernels) on
  features from a pluggable extractor (`PixelFeatures`, the offline default; `TransformersImageFeatures` for any
  vision backbone you have locally; `LearnedImageFeatures` / `learned_image_features`, a small classifier or
  autoencoder trained on the reference set itself, which sees what pixels cannot);
- memorisation: `copy_fraction` / `copy_mask` (samples closer to a training instance than its training neighbours
  are), `image_memorization`, `image_copies`;
- class-conditional samples: `class_agreement` (how often a classifier reads a sample as the class it was drawn
  for, per class, optionally without the copies; samples `flat_images` marks count as not read);
- shape generation: `point_cloud_generation_metrics` (MMD, COV, 1-NNA over `pairwise_chamfer` or `pairwise_emd`),
  `point_cloud_distances` (a set's distance matrix, reusable across generators), `sample_point_clouds`,
  `normalize_point_clouds`, `earth_movers_distance` (Sinkhorn), `exact_emd` and `emd_lower_bounds` (what lets the
  metrics solve the exact EMD only for pairs that can be nearest neighbours);
- weight-space structure: `cosine_similarity`, `correlated_initialization`, `interpolation_weights`,
  `interpolation_barrier`;
- discrimination: `discrimination_metrics` (k-means ARI, held-out 1-NN and logistic-regression accuracy),
  `tsne_embedding`, `tsne_plot`.

Names are imported on first access.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from .._lazy import lazy_attributes

_LAZY_ATTRIBUTES: dict[str, str] = {
    "psnr": ".reconstruction",
    "psnr_from_mse": ".reconstruction",
    "chamfer_distance": ".reconstruction",
    "surface_chamfer": ".reconstruction",
    "ssim": ".images",
    "ImageFeatureExtractor": ".features",
    "PixelFeatures": ".features",
    "TransformersImageFeatures": ".features",
    "image_features": ".features",
    "LearnedImageFeatures": ".learned_features",
    "learned_image_features": ".learned_features",
    "copy_fraction": ".memorization",
    "copy_mask": ".memorization",
    "image_memorization": ".memorization",
    "image_copies": ".memorization",
    "class_agreement": ".conditional",
    "flat_images": ".conditional",
    "frechet_distance": ".distributions",
    "mmd": ".distributions",
    "image_generation_metrics": ".distributions",
    "image_generation_figures": ".distributions",
    "sample_point_clouds": ".point_clouds",
    "normalize_point_clouds": ".point_clouds",
    "pairwise_chamfer": ".point_clouds",
    "earth_movers_distance": ".point_clouds",
    "exact_emd": ".point_clouds",
    "emd_lower_bounds": ".point_clouds",
    "pairwise_emd": ".point_clouds",
    "point_cloud_distances": ".point_clouds",
    "generation_metrics_from_distances": ".point_clouds",
    "point_cloud_generation_metrics": ".point_clouds",
    "cosine_similarity": ".structure",
    "correlated_initialization": ".structure",
    "interpolation_weights": ".structure",
    "interpolation_barrier": ".structure",
    "stratified_split": ".discrimination",
    "kmeans_ari": ".discrimination",
    "nearest_neighbour_accuracy": ".discrimination",
    "logistic_regression_accuracy": ".discrimination",
    "discrimination_metrics": ".discrimination",
    "tsne_embedding": ".discrimination",
    "tsne_plot": ".discrimination",
    "scatter_by_class": ".discrimination",
}

if TYPE_CHECKING:
    from .conditional import class_agreement, flat_images
    from .discrimination import (
        discrimination_metrics,
        kmeans_ari,
        logistic_regression_accuracy,
        nearest_neighbour_accuracy,
        scatter_by_class,
        stratified_split,
        tsne_embedding,
        tsne_plot,
    )
    from .distributions import frechet_distance, image_generation_figures, image_generation_metrics, mmd
    from .features import ImageFeatureExtractor, PixelFeatures, TransformersImageFeatures, image_features
    from .images import ssim
    from .learned_features import LearnedImageFeatures, learned_image_features
    from .memorization import copy_fraction, copy_mask, image_copies, image_memorization
    from .point_clouds import (
        earth_movers_distance,
        emd_lower_bounds,
        exact_emd,
        generation_metrics_from_distances,
        normalize_point_clouds,
        pairwise_chamfer,
        pairwise_emd,
        point_cloud_distances,
        point_cloud_generation_metrics,
        sample_point_clouds,
    )
    from .reconstruction import chamfer_distance, psnr, psnr_from_mse, surface_chamfer
    from .structure import correlated_initialization, cosine_similarity, interpolation_barrier, interpolation_weights

__all__ = [
    "ImageFeatureExtractor",
    "LearnedImageFeatures",
    "PixelFeatures",
    "TransformersImageFeatures",
    "chamfer_distance",
    "class_agreement",
    "copy_fraction",
    "copy_mask",
    "correlated_initialization",
    "cosine_similarity",
    "discrimination_metrics",
    "earth_movers_distance",
    "emd_lower_bounds",
    "exact_emd",
    "flat_images",
    "frechet_distance",
    "generation_metrics_from_distances",
    "image_copies",
    "image_features",
    "image_generation_figures",
    "image_generation_metrics",
    "image_memorization",
    "interpolation_barrier",
    "interpolation_weights",
    "kmeans_ari",
    "learned_image_features",
    "logistic_regression_accuracy",
    "mmd",
    "nearest_neighbour_accuracy",
    "normalize_point_clouds",
    "pairwise_chamfer",
    "pairwise_emd",
    "point_cloud_distances",
    "point_cloud_generation_metrics",
    "psnr",
    "psnr_from_mse",
    "sample_point_clouds",
    "scatter_by_class",
    "ssim",
    "stratified_split",
    "surface_chamfer",
    "tsne_embedding",
    "tsne_plot",
]

__getattr__, __dir__ = lazy_attributes(__name__, _LAZY_ATTRIBUTES, __all__)
