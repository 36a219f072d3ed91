"""Weight-space structure (cosine, correlated initialisation, interpolation barrier) and discrimination metrics."""

from __future__ import annotations

import math
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from threadpoolctl import threadpool_limits

from hf_wlora.metrics.discrimination import (
    TSNE_DPI,
    TSNE_FIGSIZE,
    discrimination_metrics,
    kmeans_ari,
    logistic_regression_accuracy,
    nearest_neighbour_accuracy,
    stratified_split,
    tsne_embedding,
    tsne_plot,
)
from hf_wlora.metrics.structure import (
    correlated_initialization,
    cosine_similarity,
    interpolation_barrier,
    interpolation_weights,
)


@pytest.fixture(autouse=True, scope="module")
def _one_thread() -> Iterator[None]:
    """sklearn's OpenMP and BLAS on one thread: their idle threads spin, so on a busy 2-core machine they cost seconds.

    Measured here: the t-SNE of 40 points took 0.2 s alone and up to 11 s beside other jobs with the default threads.
    """
    with threadpool_limits(limits=1):
        yield


def blobs(num_classes: int, per_class: int, dim: int, separation: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """`per_class` unit-variance Gaussian points around each of `num_classes` random centres of scale `separation`.

    The centres differ in every dimension, so the classes stay apart after per-dimension standardisation too.
    """
    rng = np.random.default_rng(seed)
    centres = separation * rng.normal(size=(num_classes, dim))
    features = np.concatenate([centre + rng.normal(size=(per_class, dim)) for centre in centres])
    return features, np.repeat(np.arange(num_classes), per_class)


# --- cosine similarity ----------------------------------------------------------------------------------------------


def test_cosine_similarity_known_angles() -> None:
    a = torch.tensor([[1.0, 2.0, 3.0], [1.0, 2.0, 3.0], [1.0, 0.0, 0.0], [3.0, 4.0, 0.0]])
    b = torch.tensor([[1.0, 2.0, 3.0], [-1.0, -2.0, -3.0], [0.0, 5.0, 0.0], [4.0, 3.0, 0.0]])
    similarity = cosine_similarity(a, b)
    assert similarity.dtype == torch.float64 and similarity.shape == (4,)
    # itself, its negative, orthogonal, and (3, 4).(4, 3) / 25 = 24 / 25
    assert similarity.tolist() == pytest.approx([1.0, -1.0, 0.0, 0.96], abs=1e-15)
    # scale-invariant, and the same in float32 and float64
    assert cosine_similarity(7.0 * a, b.double()).tolist() == pytest.approx(similarity.tolist(), abs=1e-15)


def test_cosine_similarity_errors() -> None:
    with pytest.raises(ValueError, match="same shape"):
        cosine_similarity(torch.ones(2, 3), torch.ones(2, 4))
    with pytest.raises(ValueError, match=r"\(N, P\)"):
        cosine_similarity(torch.ones(3), torch.ones(3))
    with pytest.raises(ValueError, match="NaN"):
        cosine_similarity(torch.tensor([[1.0, float("nan")]]), torch.ones(1, 2))
    with pytest.raises(ValueError, match=r"Instances \[1\] have an all-zero"):
        cosine_similarity(torch.tensor([[1.0, 2.0], [0.0, 0.0]]), torch.ones(2, 2))


# --- correlated initialisation --------------------------------------------------------------------------------------


def test_correlated_initialization_lambda_0_is_an_exact_copy() -> None:
    initial = torch.randn(50, 40)
    copy = correlated_initialization(initial, 0.0, torch.Generator().manual_seed(1))
    assert torch.equal(copy, initial) and copy.dtype == initial.dtype
    copy.add_(1.0)  # a new tensor, not a view of i1
    assert not torch.equal(copy, initial)


def test_correlated_initialization_lambda_1_is_pure_noise() -> None:
    first = correlated_initialization(5.0 + 3.0 * torch.randn(400_000), 1.0, torch.Generator().manual_seed(1))
    second = correlated_initialization(torch.zeros(400_000), 1.0, torch.Generator().manual_seed(1))
    assert torch.equal(first, second)  # independent of the input
    assert abs(first.mean().item()) < 0.01 and abs(first.std().item() - 1.0) < 0.01
    # eps is a float64 standard-normal draw from the generator, cast to i1's dtype
    expected = torch.randn(400_000, generator=torch.Generator().manual_seed(1), dtype=torch.float64).float()
    assert torch.equal(first, expected)


@pytest.mark.parametrize("lam", [0.3, 0.6, 0.9])
def test_correlated_initialization_correlation_is_sqrt_1_minus_lambda_squared(lam: float) -> None:
    initial = torch.randn(400_000, dtype=torch.float64)
    second = correlated_initialization(initial, lam, torch.Generator().manual_seed(2))
    correlation = torch.corrcoef(torch.stack([initial, second]))[0, 1].item()
    assert correlation == pytest.approx((1.0 - lam**2) ** 0.5, abs=0.005)  # 0.8 at lam = 0.6
    assert second.std().item() == pytest.approx(1.0, abs=0.01)  # variance preserved for unit-variance i1


def test_correlated_initialization_per_tensor_noise_and_frozen_entries() -> None:
    initial = {"in.A": torch.randn(300, 200), "in.B": torch.randn(300, 200), "out.A": torch.randn(7)}
    frozen = {"in.A": torch.rand(300, 200) < 0.3}
    second = correlated_initialization(initial, 0.6, torch.Generator().manual_seed(3), frozen=frozen)
    assert list(second) == list(initial)
    assert all(second[name].shape == tensor.shape for name, tensor in initial.items())
    mask = frozen["in.A"]
    assert torch.equal(second["in.A"][mask], initial["in.A"][mask])  # frozen entries keep i1's values
    # the others follow the formula with eps the generator's first float64 standard-normal draw
    eps = torch.randn(300, 200, generator=torch.Generator().manual_seed(3), dtype=torch.float64)
    expected = ((1.0 - 0.6**2) ** 0.5 * initial["in.A"].double() + 0.6 * eps).float()
    assert torch.equal(second["in.A"][~mask], expected[~mask])
    # each tensor has its own noise: the same-shaped in.A and in.B from equal inputs would otherwise agree
    same = {"in.A": torch.zeros(300, 200), "in.B": torch.zeros(300, 200)}
    noise = correlated_initialization(same, 1.0, torch.Generator().manual_seed(3))
    assert torch.corrcoef(torch.stack([noise["in.A"].flatten(), noise["in.B"].flatten()]))[0, 1].abs() < 0.01
    # drawn in the mapping's order: the first tensor gets the first draw, as a lone tensor would
    alone = correlated_initialization(initial["in.A"], 0.6, torch.Generator().manual_seed(3), frozen=mask)
    assert torch.equal(alone, second["in.A"])


def test_correlated_initialization_perturbs_the_random_part_of_a_distribution() -> None:
    # i1 drawn from N(mean, std^2) entry by entry, with entries of std 0 (not random: e.g. additive LoRA's B = 0)
    generator = torch.Generator().manual_seed(0)
    mean = torch.full((200_000,), 1.0)
    std = torch.full((200_000,), 0.01)
    std[:1000] = 0.0
    initial = mean + std * torch.randn(200_000, generator=generator)
    same = correlated_initialization(initial, 0.0, torch.Generator().manual_seed(1), distribution=(mean, std))
    assert torch.equal(same, initial)  # lambda = 0: the same start
    second = correlated_initialization(initial, 1.0, torch.Generator().manual_seed(1), distribution=(mean, std))
    assert torch.equal(second[:1000], initial[:1000])  # std 0: nothing random to perturb
    xi1, xi2 = ((value[1000:] - 1.0) / 0.01 for value in (initial, second))
    # lambda = 1: an independent draw of the same law (mean 1, std 0.01), uncorrelated with i1
    assert float(second[1000:].mean()) == pytest.approx(1.0, abs=1e-4)
    assert float(xi2.std()) == pytest.approx(1.0, abs=0.01)
    assert abs(float(torch.corrcoef(torch.stack([xi1, xi2]))[0, 1])) < 0.01
    half = correlated_initialization(initial, 0.5, torch.Generator().manual_seed(1), distribution=(mean, std))
    xi_half = (half[1000:] - 1.0) / 0.01
    assert float(torch.corrcoef(torch.stack([xi1, xi_half]))[0, 1]) == pytest.approx(math.sqrt(0.75), abs=0.01)
    # without a distribution the law is N(0, 1), the formula as the paper writes it
    plain = correlated_initialization(initial, 0.5, torch.Generator().manual_seed(1))
    moments = (torch.zeros(()), torch.ones(()))
    assert torch.equal(
        plain, correlated_initialization(initial, 0.5, torch.Generator().manual_seed(1), distribution=moments)
    )
    with pytest.raises(ValueError, match="non-negative std"):
        correlated_initialization(initial, 0.5, generator, distribution=(mean, -std))
    with pytest.raises(ValueError, match=r"distribution has moments for \['typo.A'\]"):
        correlated_initialization({"in.A": initial}, 0.5, generator, distribution={"typo.A": (mean, std)})


def test_correlated_initialization_errors() -> None:
    generator = torch.Generator().manual_seed(0)
    with pytest.raises(ValueError, match=r"lam must be a number in \[0, 1\]"):
        correlated_initialization(torch.ones(3), 1.5, generator)
    with pytest.raises(ValueError, match=r"torch\.Generator"):
        correlated_initialization(torch.ones(3), 0.5, 0)  # type: ignore[call-overload]
    with pytest.raises(ValueError, match="bool tensor of the tensor's shape"):
        correlated_initialization(torch.ones(3), 0.5, generator, frozen=torch.ones(3))
    with pytest.raises(ValueError, match=r"masks for \['typo.A'\]"):
        correlated_initialization({"in.A": torch.ones(3)}, 0.5, generator, frozen={"typo.A": torch.ones(3) > 0})
    with pytest.raises(ValueError, match="NaN"):
        correlated_initialization({"in.A": torch.tensor([float("nan")])}, 0.5, generator)
    with pytest.raises(ValueError, match="floating point"):
        correlated_initialization(torch.ones(3, dtype=torch.long), 0.5, generator)


# --- interpolation --------------------------------------------------------------------------------------------------


def test_interpolation_weights_endpoints_exact_and_midpoint_average() -> None:
    start, end = torch.randn(1000, dtype=torch.float64), torch.randn(1000, dtype=torch.float64)
    path = interpolation_weights(start, end, 5)
    assert path.shape == (5, 1000) and path.dtype == torch.float64
    assert torch.equal(path[0], start) and torch.equal(path[-1], end)
    assert torch.equal(path[2], (start + end) / 2)
    assert torch.allclose(path[1], 0.75 * start + 0.25 * end, rtol=0, atol=1e-15)
    start32, end32 = start.float(), end.float()
    path32 = interpolation_weights(start32, end32, 11)
    assert path32.dtype == torch.float32
    assert torch.equal(path32[0], start32) and torch.equal(path32[-1], end32)


def test_interpolation_weights_errors() -> None:
    with pytest.raises(ValueError, match=r"flat \(P,\)"):
        interpolation_weights(torch.ones(2, 3), torch.ones(2, 3), 3)
    with pytest.raises(ValueError, match="num_points must be an integer >= 2"):
        interpolation_weights(torch.ones(3), torch.ones(3), 1)
    with pytest.raises(ValueError, match="NaN"):
        interpolation_weights(torch.ones(3), torch.tensor([1.0, float("nan"), 1.0]), 3)


def test_interpolation_barrier_known_answers() -> None:
    # flat path between identical endpoints, and a straight path: exactly 0 either way
    assert interpolation_barrier([31.7, 31.7, 31.7, 31.7], higher_is_better=True) == 0.0
    assert interpolation_barrier(torch.tensor([31.7, 31.7, 31.7]), higher_is_better=False) == 0.0
    assert interpolation_barrier([1.0, 2.0, 3.0], higher_is_better=True) == 0.0
    # PSNR at alpha 0, .25, .5, .75, 1: chord 30 + 4 alpha = 30, 31, 32, 33, 34 -> drops 0, 2, 4, 0, 0
    assert interpolation_barrier([30.0, 29.0, 28.0, 33.0, 34.0], higher_is_better=True) == 4.0
    # Chamfer: chord 1 + alpha = 1, 1.25, 1.5, 1.75, 2 -> rises 0, 0.25, 1, 0.25, 0
    assert interpolation_barrier(np.array([1.0, 1.5, 2.5, 2.0, 2.0]), higher_is_better=False) == 1.0
    # three points: chord 11 at the midpoint, dip to 8 -> 3; a Chamfer bump from chord 3 to 5 -> 2
    assert interpolation_barrier([10.0, 8.0, 12.0], higher_is_better=True) == 3.0
    assert interpolation_barrier([2.0, 5.0, 4.0], higher_is_better=False) == 2.0


def test_interpolation_barrier_is_zero_for_a_path_better_than_its_chord() -> None:
    # PSNR bulging above the chord everywhere: no barrier (clamped at 0 by the endpoints), the same path read as a
    # lower-is-better metric has a barrier of its largest rise, 6
    bulge = [30.0, 35.0, 36.0, 35.0, 30.0]
    assert interpolation_barrier(bulge, higher_is_better=True) == 0.0
    assert interpolation_barrier(bulge, higher_is_better=False) == 6.0
    assert interpolation_barrier([1.0, 0.5, 0.25, 0.5, 1.0], higher_is_better=False) == 0.0


def test_interpolation_barrier_errors() -> None:
    with pytest.raises(ValueError, match="at least 3"):
        interpolation_barrier([1.0, 2.0], higher_is_better=True)
    with pytest.raises(ValueError, match="1-D"):
        interpolation_barrier([[1.0, 2.0, 3.0]], higher_is_better=True)
    with pytest.raises(ValueError, match="cap an infinite PSNR"):
        interpolation_barrier([30.0, float("inf"), 30.0], higher_is_better=True)


# --- discrimination -------------------------------------------------------------------------------------------------


def test_stratified_split_keeps_every_class_on_both_sides_deterministically() -> None:
    labels = np.array(["car"] * 2 + ["chair"] * 3 + ["plane"] * 10 + ["lamp"] * 5)
    train, test = stratified_split(labels, test_fraction=0.2, seed=4)
    assert sorted(np.concatenate([train, test]).tolist()) == list(range(20))
    assert np.all(np.diff(train) > 0) and np.all(np.diff(test) > 0)
    # per class round(0.2 n), clamped to [1, n - 1]: car 2 -> 1, chair 3 -> 1, plane 10 -> 2, lamp 5 -> 1
    assert {name: int((labels[test] == name).sum()) for name in np.unique(labels)} == {
        "car": 1,
        "chair": 1,
        "lamp": 1,
        "plane": 2,
    }
    assert set(labels[train]) == set(labels)
    again = stratified_split(torch.as_tensor(np.unique(labels, return_inverse=True)[1]), test_fraction=0.2, seed=4)
    assert all(np.array_equal(a, b) for a, b in zip((train, test), again, strict=True))
    other = stratified_split(labels, test_fraction=0.2, seed=5)
    assert not np.array_equal(test, other[1])


def test_stratified_split_errors() -> None:
    with pytest.raises(ValueError, match=r"Classes \['2'\] of labels have fewer than 2 members"):
        stratified_split(np.array([0, 0, 1, 1, 2]))
    with pytest.raises(ValueError, match="at least 2 classes"):
        stratified_split(np.zeros(10))
    with pytest.raises(ValueError, match="strictly between 0 and 1"):
        stratified_split(np.array([0, 0, 1, 1]), test_fraction=1.0)
    with pytest.raises(ValueError, match=r"\(N,\)"):
        stratified_split(np.zeros((4, 2)))
    with pytest.raises(ValueError, match="NaN"):
        stratified_split(np.array([0.0, 0.0, 1.0, np.nan]))


def test_separable_blobs_are_discriminated_perfectly() -> None:
    features, labels = blobs(num_classes=3, per_class=30, dim=10, separation=12.0, seed=0)
    metrics = discrimination_metrics(torch.as_tensor(features), labels, test_fraction=0.2, seed=0)
    assert metrics == {"ari": 1.0, "nn_accuracy": 1.0, "logreg_accuracy": 1.0, "num_train": 72, "num_test": 18}


def test_labels_independent_of_features_give_chance() -> None:
    rng = np.random.default_rng(0)
    features, labels = rng.normal(size=(400, 5)), rng.integers(0, 4, size=400)
    metrics = discrimination_metrics(features, labels, seed=0)
    assert abs(metrics["ari"]) < 0.1
    # chance is 1 / 4; 80 test instances give a standard deviation of about 0.05
    assert abs(metrics["nn_accuracy"] - 0.25) < 0.15 and abs(metrics["logreg_accuracy"] - 0.25) < 0.15


def test_nearest_neighbour_accuracy_by_hand() -> None:
    # 1-D: train 0 (class 0) and 10 (class 1); test 1 -> 0 right, 9 -> 1 right, 4 -> 0 wrong, 6 -> 1 right, 7 -> 1 wrong
    train, test = np.array([[0.0], [10.0]]), np.array([[1.0], [9.0], [4.0], [6.0], [7.0]])
    assert nearest_neighbour_accuracy(train, [0, 1], test, [0, 1, 1, 1, 0]) == 0.6
    # a tie (1 is 1 from both) goes to the training instance that comes first
    assert nearest_neighbour_accuracy(np.array([[0.0], [2.0]]), [5, 7], np.array([[1.0]]), [5]) == 1.0
    assert nearest_neighbour_accuracy(np.array([[2.0], [0.0]]), [7, 5], np.array([[1.0]]), [7]) == 1.0


def test_standardisation_decides_the_nearest_neighbour() -> None:
    # the class is in the small-scale first coordinate. Raw, (0.01, 0.4) is 0.4001 from (0, 0) and 0.6 from
    # (0.01, 1): wrong. Standardised with the train mean (0.005, 0.5) and std (0.005, 0.5) it is (1, -0.2), at
    # squared distance 4.64 from (-1, -1) and 1.44 from (1, 1): right. (0, 0.6) mirrors it.
    train, test = np.array([[0.0, 0.0], [0.01, 1.0]]), np.array([[0.01, 0.4], [0.0, 0.6]])
    assert nearest_neighbour_accuracy(train, [0, 1], test, [1, 0]) == 1.0
    assert nearest_neighbour_accuracy(train, [0, 1], test, [1, 0], standardize=False) == 0.0


def test_logistic_regression_and_kmeans_on_a_hand_example() -> None:
    # two tight pairs far apart on one axis: a linear probe and 2-means both recover the classes
    features = np.array([[0.0, 0.0], [0.1, 0.0], [10.0, 0.0], [10.1, 0.0]])
    labels = np.array(["a", "a", "b", "b"])
    assert kmeans_ari(features, labels) == 1.0
    assert kmeans_ari(features, np.array(["a", "b", "a", "b"])) == pytest.approx(-0.5)  # (ARI of a crossed pairing)
    test = np.array([[1.0, 0.0], [9.0, 0.0]])
    assert logistic_regression_accuracy(features, labels, test, ["a", "b"]) == 1.0
    assert logistic_regression_accuracy(features, labels, test, ["b", "a"]) == 0.0


def test_discrimination_errors() -> None:
    features = np.zeros((4, 3))
    with pytest.raises(ValueError, match=r"\(4,\), one per instance"):
        kmeans_ari(features, [0, 1, 1])
    with pytest.raises(ValueError, match="at least 2 classes"):
        kmeans_ari(features, [0, 0, 0, 0])
    with pytest.raises(ValueError, match=r"non-empty \(N, D\)"):
        kmeans_ari(np.zeros(4), [0, 0, 1, 1])
    with pytest.raises(ValueError, match="NaN"):
        kmeans_ari(np.full((4, 3), np.nan), [0, 0, 1, 1])
    with pytest.raises(ValueError, match="3 dimensions and test_features 2"):
        nearest_neighbour_accuracy(features, [0, 0, 1, 1], np.zeros((2, 2)), [0, 1])
    with pytest.raises(ValueError, match="fewer than 2 classes"):
        logistic_regression_accuracy(features, [0, 0, 0, 0], np.zeros((2, 3)), [0, 1])
    with pytest.raises(ValueError, match="fewer than 2 members"):
        discrimination_metrics(features, [0, 0, 0, 1])


# --- t-SNE ----------------------------------------------------------------------------------------------------------


def test_tsne_embedding_separates_blobs() -> None:
    features, labels = blobs(num_classes=2, per_class=20, dim=10, separation=6.0, seed=1)
    embedding = tsne_embedding(features, seed=0)
    assert embedding.shape == (40, 2)
    assert np.array_equal(embedding, tsne_embedding(features, seed=0))  # seeded
    centres = [embedding[labels == k].mean(axis=0) for k in (0, 1)]
    spread = max(np.linalg.norm(embedding[labels == k] - centres[k], axis=1).max() for k in (0, 1))
    assert np.linalg.norm(centres[0] - centres[1]) > 3 * spread


def test_tsne_plot_writes_a_png(tmp_path: Path) -> None:
    features, labels = blobs(num_classes=3, per_class=8, dim=6, separation=6.0, seed=2)
    path = tsne_plot(
        features, labels, tmp_path / "plots" / "tsne.png", class_names=["plane", "car", "chair"], title="t"
    )
    assert path == tmp_path / "plots" / "tsne.png"
    with Image.open(path) as image:
        assert image.format == "PNG"
        assert image.size == (round(TSNE_FIGSIZE[0] * TSNE_DPI), round(TSNE_FIGSIZE[1] * TSNE_DPI))
        pixels = np.asarray(image.convert("RGB")).reshape(-1, 3).astype(float)
    # each class is drawn in its tab10 colour (blue, orange, green) at alpha 0.8 on white; the fourth (red) is absent
    tab10 = np.array([(31, 119, 180), (255, 127, 14), (44, 160, 44), (214, 39, 40)])
    counts = [int((np.abs(pixels - (0.8 * colour + 0.2 * 255)).max(axis=1) <= 2).sum()) for colour in tab10]
    assert min(counts[:3]) > 50 and counts[3] == 0, counts


def test_tsne_errors(tmp_path: Path) -> None:
    features, labels = blobs(num_classes=2, per_class=4, dim=3, separation=6.0, seed=0)
    with pytest.raises(ValueError, match=r"ending in \.png"):
        tsne_plot(features, labels, tmp_path / "tsne.jpg")
    with pytest.raises(ValueError, match="no name for label"):
        tsne_plot(features, labels, tmp_path / "tsne.png", class_names={0: "plane"})
    with pytest.raises(ValueError, match="pass a mapping"):
        tsne_plot(features, labels, tmp_path / "tsne.png", class_names=["plane"])
    with pytest.raises(ValueError, match=r"perplexity must lie in \(0, N\) = \(0, 8\)"):
        tsne_embedding(features, perplexity=8)
    with pytest.raises(ValueError, match="at least 4 instances and 2 feature dimensions"):
        tsne_embedding(features[:, :1])
    # identical vectors (a representation whose fits never moved) used to crash sklearn's Barnes-Hut tree
    with pytest.raises(ValueError, match="every instance has the same features"):
        tsne_embedding(np.ones((12, 5)))
    assert not (tmp_path / "tsne.png").exists()
