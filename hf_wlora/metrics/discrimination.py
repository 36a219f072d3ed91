"""Discrimination (the paper's Table 4): how well weight vectors separate classes, by clustering, 1-NN and a linear
probe.

The paper reports the adjusted Rand index of k-means clustering over all instances, and 1-NN and logistic-regression
accuracy on held-out instances, plus a t-SNE picture. Features are (N, D) arrays or tensors (flat weight vectors,
one row per instance) and labels any (N,) class labels (integers or names).

Every metric standardises each feature dimension first (zero mean, unit variance; fitted on the training instances
where there is a split), because the weights of different layers and factors live on different scales and Euclidean
distances, k-means included, would otherwise see only the largest-scale coordinates. A dimension that is constant
(the frozen entries of an asymmetric mask) becomes 0 instead of dividing by zero. `standardize=False` uses the
features as they are.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor

# t-SNE figure: size in inches and resolution, so a saved picture is (TSNE_FIGSIZE * TSNE_DPI) pixels.
TSNE_FIGSIZE = (7.0, 5.5)
TSNE_DPI = 120


def stratified_split(
    labels: np.ndarray | Tensor | Sequence[Any], test_fraction: float = 0.2, seed: int = 0
) -> tuple[np.ndarray, np.ndarray]:
    """Split instance indices into (train, test), class by class, so every class appears on both sides.

    Each class of n members sends round(test_fraction * n) of them, but at least 1 and at most n - 1, chosen at random
    (seeded by `seed`), to the test side. Both index arrays are sorted; one seed always gives one split.
    """
    classes = _labels(labels, "labels")
    if not 0.0 < test_fraction < 1.0:
        raise ValueError(f"test_fraction must lie strictly between 0 and 1, got {test_fraction!r}.")
    names, counts = np.unique(classes, return_counts=True)
    _check_classes(names, counts, "labels")
    rng = np.random.default_rng(seed)
    test: list[np.ndarray] = []
    for name, count in zip(names, counts, strict=True):
        members = rng.permutation(np.flatnonzero(classes == name))
        test.append(members[: min(max(int(np.floor(test_fraction * count + 0.5)), 1), count - 1)])
    is_test = np.zeros(len(classes), dtype=bool)
    is_test[np.concatenate(test)] = True
    return np.flatnonzero(~is_test), np.flatnonzero(is_test)


def kmeans_ari(
    features: np.ndarray | Tensor, labels: np.ndarray | Tensor | Sequence[Any], seed: int = 0, standardize: bool = True
) -> float:
    """Adjusted Rand index between k-means clusters (as many as there are classes) and the class labels.

    k-means runs 10 initialisations with `random_state=seed` and keeps the best. ARI is 1 for clusters that are the
    classes, about 0 for clusters unrelated to them (it is chance-corrected) and can be slightly negative.
    """
    from sklearn.cluster import KMeans
    from sklearn.metrics import adjusted_rand_score

    x = _features(features, "features")
    y = _labels(labels, "labels", len(x))
    names, counts = np.unique(y, return_counts=True)
    _check_classes(names, counts, "labels", min_members=1)
    (x,) = _standardized(x, standardize=standardize)
    clusters = KMeans(n_clusters=len(names), n_init=10, random_state=seed).fit_predict(x)
    return float(adjusted_rand_score(y, clusters))


def nearest_neighbour_accuracy(
    train_features: np.ndarray | Tensor,
    train_labels: np.ndarray | Tensor | Sequence[Any],
    test_features: np.ndarray | Tensor,
    test_labels: np.ndarray | Tensor | Sequence[Any],
    standardize: bool = True,
) -> float:
    """Fraction of test instances whose nearest training instance (Euclidean, 1-NN) has their label.

    The standardisation is fitted on the training features and applied to both. A tie in distance goes to the
    training instance that comes first.
    """
    from sklearn.metrics import pairwise_distances_argmin

    x_train, y_train, x_test, y_test = _train_test(train_features, train_labels, test_features, test_labels)
    x_train, x_test = _standardized(x_train, x_test, standardize=standardize)
    nearest = pairwise_distances_argmin(x_test, x_train, metric="euclidean")
    return float(np.mean(y_train[nearest] == y_test))


def logistic_regression_accuracy(
    train_features: np.ndarray | Tensor,
    train_labels: np.ndarray | Tensor | Sequence[Any],
    test_features: np.ndarray | Tensor,
    test_labels: np.ndarray | Tensor | Sequence[Any],
    seed: int = 0,
    standardize: bool = True,
) -> float:
    """Test accuracy of a (multinomial, L2-regularised, C = 1) logistic regression fitted on the training instances.

    A linear probe: sklearn's `LogisticRegression(max_iter=2000, random_state=seed)` on features standardised with the
    training set's statistics.
    """
    from sklearn.linear_model import LogisticRegression

    x_train, y_train, x_test, y_test = _train_test(train_features, train_labels, test_features, test_labels)
    x_train, x_test = _standardized(x_train, x_test, standardize=standardize)
    model = LogisticRegression(max_iter=2000, random_state=seed).fit(x_train, y_train)
    return float(np.mean(model.predict(x_test) == y_test))


def discrimination_metrics(
    features: np.ndarray | Tensor,
    labels: np.ndarray | Tensor | Sequence[Any],
    test_fraction: float = 0.2,
    seed: int = 0,
    standardize: bool = True,
) -> dict[str, float]:
    """The paper's three discrimination numbers for one set of weight vectors, as fractions in [0, 1] (ARI <= 1).

    "ari" is k-means ARI over all instances (clustering needs no split); "nn_accuracy" and "logreg_accuracy" are
    measured on the test side of `stratified_split(labels, test_fraction, seed)` after fitting on the train side,
    whose sizes are "num_train" and "num_test". Multiply by 100 for the paper's percentages.
    """
    x = _features(features, "features")
    y = _labels(labels, "labels", len(x))
    train, test = stratified_split(y, test_fraction, seed)
    return {
        "ari": kmeans_ari(x, y, seed=seed, standardize=standardize),
        "nn_accuracy": nearest_neighbour_accuracy(x[train], y[train], x[test], y[test], standardize=standardize),
        "logreg_accuracy": logistic_regression_accuracy(
            x[train], y[train], x[test], y[test], seed=seed, standardize=standardize
        ),
        "num_train": len(train),
        "num_test": len(test),
    }


# Largest set embedded with exact t-SNE (O(N^2) per iteration: about a second at 128 instances, minutes at 2,000).
EXACT_TSNE_LIMIT = 1000


def tsne_embedding(
    features: np.ndarray | Tensor, seed: int = 0, perplexity: float | None = None, standardize: bool = True
) -> np.ndarray:
    """A 2-D t-SNE embedding (N, 2) of the (standardised) features, for pictures only: its distances are not metrics.

    sklearn's t-SNE with PCA initialisation and `random_state=seed`: exact up to `EXACT_TSNE_LIMIT` instances
    (sklearn's Barnes-Hut tree recurses without end on duplicate points and crashed the process on a set of
    identical weight vectors), Barnes-Hut above. The perplexity defaults to min(30, (N - 1) / 3), sklearn's 30 where
    N allows it; an explicit one must lie in (0, N). Features that are all the same raise a ValueError.
    """
    from sklearn.manifold import TSNE

    x = _features(features, "features")
    if len(x) < 4 or x.shape[1] < 2:
        raise ValueError(
            f"t-SNE needs at least 4 instances and 2 feature dimensions (for its PCA initialisation), got {x.shape}."
        )
    perplexity = min(30.0, (len(x) - 1) / 3.0) if perplexity is None else float(perplexity)
    if not 0.0 < perplexity < len(x):
        raise ValueError(
            f"perplexity must lie in (0, N) = (0, {len(x)}), got {perplexity}; leave it None for the default."
        )
    if len(np.unique(x, axis=0)) < 2:
        raise ValueError("t-SNE needs at least 2 distinct feature vectors, but every instance has the same features.")
    (x,) = _standardized(x, standardize=standardize)
    method = "exact" if len(x) <= EXACT_TSNE_LIMIT else "barnes_hut"
    tsne = TSNE(n_components=2, perplexity=perplexity, init="pca", random_state=seed, method=method)
    return tsne.fit_transform(x).astype(np.float64)


def tsne_plot(
    features: np.ndarray | Tensor,
    labels: np.ndarray | Tensor | Sequence[Any],
    path: str | Path,
    class_names: Sequence[str] | Mapping[Any, str] | None = None,
    title: str | None = None,
    seed: int = 0,
    perplexity: float | None = None,
    standardize: bool = True,
) -> Path:
    """Save a scatter plot of `tsne_embedding(features, ...)` coloured by class, with a legend, as a PNG at `path`.

    `class_names` gives each class's legend entry: a mapping from label to name, or a sequence indexed by integer
    labels (class k is `class_names[k]`); without it the labels themselves are shown. The picture is drawn on a
    matplotlib Agg canvas (headless) without touching pyplot's global backend; it is TSNE_FIGSIZE * TSNE_DPI pixels.
    Missing parent folders are created. Returns the path.
    """
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    path = Path(path)
    if path.suffix.lower() != ".png":
        raise ValueError(f"The t-SNE plot is saved as PNG: give a path ending in .png, got {str(path)!r}.")
    x = _features(features, "features")
    y = _labels(labels, "labels", len(x))
    for label in np.unique(y):
        _class_name(label, class_names)  # a missing name fails now, not after the embedding
    embedding = tsne_embedding(x, seed=seed, perplexity=perplexity, standardize=standardize)

    figure = Figure(figsize=TSNE_FIGSIZE, dpi=TSNE_DPI, layout="constrained")
    FigureCanvasAgg(figure)
    axes = figure.add_subplot()
    scatter_by_class(axes, embedding, y, class_names)
    if title is not None:
        axes.set_title(title)
    figure.legend(loc="outside right upper", markerscale=2.0, frameon=False)
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, format="png", dpi=TSNE_DPI)
    return path


def scatter_by_class(
    axes: Any,
    embedding: np.ndarray,
    labels: np.ndarray,
    class_names: Sequence[str] | Mapping[Any, str] | None = None,
) -> None:
    """Scatter a 2-D `embedding` on matplotlib `axes`, one distinct colour and legend label per class of `labels`."""
    classes = np.unique(labels)
    for label, colour in zip(classes, _colours(len(classes)), strict=True):
        points = embedding[labels == label]
        name = _class_name(label, class_names)
        axes.scatter(points[:, 0], points[:, 1], s=12, color=colour, label=name, alpha=0.8, linewidths=0)
    axes.set_xticks([])
    axes.set_yticks([])


def _colours(count: int) -> list[tuple[float, float, float, float]]:
    """`count` distinct RGBA colours: matplotlib's tab10 up to 10 classes, tab20 up to 20, then evenly spaced turbo."""
    from matplotlib import colormaps

    if count <= 10:
        return [colormaps["tab10"](k) for k in range(count)]
    if count <= 20:
        return [colormaps["tab20"](k) for k in range(count)]
    return [colormaps["turbo"](value) for value in np.linspace(0.0, 1.0, count)]


def _class_name(label: Any, class_names: Sequence[str] | Mapping[Any, str] | None) -> str:
    if class_names is None:
        return str(label)
    if isinstance(class_names, Mapping):
        if label not in class_names:
            raise ValueError(f"class_names has no name for label {label!r}; give a name for every label.")
        return str(class_names[label])
    if not (isinstance(label, (int, np.integer)) and 0 <= label < len(class_names)):
        raise ValueError(
            f"A sequence of {len(class_names)} class_names is indexed by integer labels 0..{len(class_names) - 1}, "
            f"but there is a label {label!r}; pass a mapping from label to name instead."
        )
    return str(class_names[int(label)])


def _features(features: np.ndarray | Tensor, name: str) -> np.ndarray:
    """Features as a finite float64 (N, D) array."""
    array = np.asarray(torch.as_tensor(features).detach().cpu(), dtype=np.float64)
    if array.ndim != 2 or array.shape[0] == 0 or array.shape[1] == 0:
        raise ValueError(
            f"{name} must be a non-empty (N, D) array, one flat weight vector per instance, got shape {array.shape}."
        )
    if not np.isfinite(array).all():
        raise ValueError(f"{name} contains NaN or infinite values.")
    return array


def _labels(labels: np.ndarray | Tensor | Sequence[Any], name: str, count: int | None = None) -> np.ndarray:
    """Labels as a 1-D array (of `count` entries when given), without NaN."""
    array = labels.detach().cpu().numpy() if isinstance(labels, Tensor) else np.asarray(labels)
    if array.ndim != 1 or (count is not None and len(array) != count):
        expected = "(N,)" if count is None else f"({count},), one per instance,"
        raise ValueError(f"{name} must be a {expected} array of class labels, got shape {array.shape}.")
    if array.dtype.kind == "f" and np.isnan(array).any():
        raise ValueError(f"{name} contains NaN; every instance needs a class label.")
    return array


def _check_classes(names: np.ndarray, counts: np.ndarray, name: str, min_members: int = 2) -> None:
    if len(names) < 2:
        raise ValueError(f"{name} has {len(names)} class(es); discrimination needs at least 2 classes.")
    small = [str(label) for label, count in zip(names, counts, strict=True) if count < min_members]
    if small:
        raise ValueError(
            f"Classes {small} of {name} have fewer than {min_members} members; a held-out split needs each class on "
            "both sides. Drop those classes or add instances."
        )


def _train_test(
    train_features: np.ndarray | Tensor,
    train_labels: np.ndarray | Tensor | Sequence[Any],
    test_features: np.ndarray | Tensor,
    test_labels: np.ndarray | Tensor | Sequence[Any],
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    x_train, x_test = _features(train_features, "train_features"), _features(test_features, "test_features")
    if x_train.shape[1] != x_test.shape[1]:
        raise ValueError(
            f"train_features have {x_train.shape[1]} dimensions and test_features {x_test.shape[1]}; both must come "
            "from one representation."
        )
    y_train = _labels(train_labels, "train_labels", len(x_train))
    y_test = _labels(test_labels, "test_labels", len(x_test))
    if len(np.unique(y_train)) < 2:
        raise ValueError("train_labels has fewer than 2 classes; a classifier needs at least 2 to tell apart.")
    return x_train, y_train, x_test, y_test


def _standardized(fit: np.ndarray, *others: np.ndarray, standardize: bool) -> tuple[np.ndarray, ...]:
    """`fit` and `others` scaled by `fit`'s per-dimension mean and std (a constant dimension becomes 0)."""
    if not standardize:
        return (fit, *others)
    from sklearn.preprocessing import StandardScaler

    scaler = StandardScaler().fit(fit)
    return tuple(scaler.transform(array) for array in (fit, *others))
