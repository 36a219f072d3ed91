"""The pruned nearest-neighbour search: the generation metrics read off its matrices equal those of the full ones."""

from __future__ import annotations

import itertools

import pytest
import torch

from hf_wlora.metrics.neighbour_search import nearest_neighbour_matrices, nearest_within
from hf_wlora.metrics.point_clouds import generation_metrics_from_distances


def plane_distances(points_a: torch.Tensor, points_b: torch.Tensor) -> torch.Tensor:
    """Euclidean distances of every point of `points_a` (N, 2) to every point of `points_b` (M, 2), float64."""
    return (points_a[:, None] - points_b[None]).double().norm(dim=-1)


class CountingDistance:
    """Distances between points of the plane, counting the pairs computed; with `prove`, a pair whose distance
    exceeds its limit returns a bound above the limit instead (the contract's shortcut)."""

    def __init__(self, first: torch.Tensor, second: torch.Tensor, prove: bool = False) -> None:
        self.first, self.second, self.prove = first, second, prove
        self.computed = 0

    def __call__(self, rows: torch.Tensor, columns: torch.Tensor, limits: torch.Tensor) -> torch.Tensor:
        values = (self.first[rows] - self.second[columns]).double().norm(dim=-1)
        if self.prove:  # the bound halfway between the limit and the distance, where the distance exceeds the limit
            above = values > limits
            values = torch.where(above, (values + limits.clamp_max(1e9)) / 2, values)
            self.computed += int((~above).sum())
        else:
            self.computed += len(rows)
        return values


def search(samples: torch.Tensor, references: torch.Tensor, looseness: float, batch_size: int, prove: bool = False):
    """The search with bounds `looseness` times below the true distances (1-D projections would do; this keeps the
    bound's tightness a parameter)."""
    cross = CountingDistance(samples, references, prove)
    within = CountingDistance(samples, samples, prove)
    found = nearest_neighbour_matrices(
        plane_distances(samples, references) / looseness,
        plane_distances(samples, samples) / looseness,
        cross,
        within,
        batch_size=batch_size,
    )
    return found, cross.computed + within.computed


@pytest.mark.parametrize(("seed", "looseness", "batch_size"), itertools.product(range(4), (1.0, 1.5, 3.0), (1, 3)))
def test_the_metrics_of_the_pruned_matrices_equal_those_of_the_full_ones(
    seed: int, looseness: float, batch_size: int
) -> None:
    generator = torch.Generator().manual_seed(seed)
    references = torch.randn(12, 2, generator=generator)
    # samples: near some references, a tight cluster of their own (1-NNA's sample-to-sample side), far outliers
    samples = torch.cat(
        [
            references[:5] + 0.05 * torch.randn(5, 2, generator=generator),
            torch.randn(1, 2, generator=generator) + 0.01 * torch.randn(4, 2, generator=generator),
            4.0 + torch.randn(3, 2, generator=generator),
        ]
    )
    full_cross, full_samples = plane_distances(samples, references), plane_distances(samples, samples)
    own = plane_distances(references, references)
    found, computed = search(samples, references, looseness, batch_size)
    assert generation_metrics_from_distances(
        found.sample_to_reference, found.sample_to_sample, own
    ) == generation_metrics_from_distances(full_cross, full_samples, own)
    # the sample-to-reference minima are exact in value and index, either way round
    for dim in (0, 1):
        assert torch.equal(found.sample_to_reference.min(dim=dim).values, full_cross.min(dim=dim).values)
        assert torch.equal(found.sample_to_reference.argmin(dim=dim), full_cross.argmin(dim=dim))
    # a pair is computed or holds its bound; bounds never exceed the distances
    computed_entries = found.sample_to_reference == full_cross
    bound_entries = found.sample_to_reference == full_cross / looseness
    assert bool((computed_entries | bound_entries).all())
    assert torch.equal(found.sample_to_sample, found.sample_to_sample.T)
    assert bool((found.sample_to_sample.diagonal() == 0).all())
    assert found.total_pairs == 12 * 12 + 12 * 11 // 2 and computed == found.visited_pairs
    if looseness == 1.0:  # exact bounds: a pair is computed only where it is a minimum (ties aside)
        assert computed < found.total_pairs / 2


def test_ties_are_found_as_the_full_matrices_break_them() -> None:
    """Samples copying references and each other: every distance a tie at 0 is computed, so the lower-index rule of
    the full matrices (samples before references) decides as it would there."""
    references = torch.tensor([[0.0, 0.0], [1.0, 0.0], [0.0, 1.0], [5.0, 5.0]])
    samples = torch.tensor([[0.0, 0.0], [0.0, 0.0], [1.0, 0.0], [3.0, 3.0]])
    own = plane_distances(references, references)
    found, _ = search(samples, references, 1.0, 1)
    full = plane_distances(samples, references), plane_distances(samples, samples)
    expected = generation_metrics_from_distances(*full, own)
    assert generation_metrics_from_distances(found.sample_to_reference, found.sample_to_sample, own) == expected
    assert found.sample_to_sample[0, 1] == 0.0  # sample 0's nearest other cloud is sample 1 (tied with reference 0)


def test_a_distance_may_return_a_bound_above_the_limit_instead() -> None:
    generator = torch.Generator().manual_seed(9)
    references, samples = torch.randn(10, 2, generator=generator), torch.randn(8, 2, generator=generator)
    own = plane_distances(references, references)
    plain, plain_computed = search(samples, references, 2.0, 2)
    proved, proved_computed = search(samples, references, 2.0, 2, prove=True)
    metrics = generation_metrics_from_distances(proved.sample_to_reference, proved.sample_to_sample, own)
    assert metrics == generation_metrics_from_distances(plain.sample_to_reference, plain.sample_to_sample, own)
    assert proved_computed < plain_computed


def test_the_search_rejects_mismatched_bounds_and_batches() -> None:
    unused = CountingDistance(torch.zeros(3, 2), torch.zeros(2, 2))
    with pytest.raises(ValueError, match=r"sample_bounds has shape \(2, 2\); with 3 samples"):
        nearest_neighbour_matrices(torch.zeros(3, 2), torch.zeros(2, 2), unused, unused)
    with pytest.raises(ValueError, match="batch_size must be at least 1"):
        nearest_neighbour_matrices(torch.zeros(3, 2), torch.zeros(3, 3), unused, unused, batch_size=0)
    with pytest.raises(ValueError, match=r"cross_bounds must be an \(S, R\) matrix, got shape \(3, 2, 1\)"):
        nearest_neighbour_matrices(torch.zeros(3, 2, 1), torch.zeros(3, 3), unused, unused)


def test_zero_bounds_rule_out_only_settled_sample_pairs() -> None:
    """Bounds of 0 rule no sample-to-reference pair out (that matrix comes back full); a sample pair is skipped only
    once both its samples have a nearer sample than their closest reference."""
    generator = torch.Generator().manual_seed(2)
    # samples in a tight cluster far from the references: each settles on the first sample it is compared with
    references, samples = torch.randn(5, 2, generator=generator), 9.0 + 0.1 * torch.randn(6, 2, generator=generator)
    full_samples = plane_distances(samples, samples)
    found = nearest_neighbour_matrices(
        torch.zeros(6, 5, dtype=torch.float64),
        torch.zeros(6, 6, dtype=torch.float64),
        CountingDistance(samples, references),
        CountingDistance(samples, samples),
    )
    assert torch.equal(found.sample_to_reference, plane_distances(samples, references))
    assert bool(((found.sample_to_sample == full_samples) | (found.sample_to_sample == 0)).all())
    # equal bounds are visited in index order: (0, 1) settles samples 0 and 1, (0, 2) ... (0, 5) the others
    assert found.visited_pairs == 30 + 5
    assert int((found.sample_to_sample.triu(diagonal=1) > 0).sum()) == 5
    own = plane_distances(references, references)
    assert generation_metrics_from_distances(
        found.sample_to_reference, found.sample_to_sample, own
    ) == generation_metrics_from_distances(found.sample_to_reference, full_samples, own)


@pytest.mark.parametrize(("looseness", "batch_size"), [(1.0, 1), (1.5, 2), (3.0, 3)])
def test_one_sets_row_minima_are_exact_in_value_and_column(looseness: float, batch_size: int) -> None:
    generator = torch.Generator().manual_seed(5)
    points = torch.cat([torch.randn(10, 2, generator=generator), torch.zeros(2, 2)])  # two tied at distance 0
    full = plane_distances(points, points)
    distance = CountingDistance(points, points)
    matrix, visited = nearest_within(full / looseness, distance, batch_size=batch_size)
    own = full.clone().fill_diagonal_(float("inf"))
    found = matrix.clone().fill_diagonal_(float("inf"))
    assert torch.equal(found.min(dim=1).values, own.min(dim=1).values)
    assert torch.equal(found.argmin(dim=1), own.argmin(dim=1))
    assert torch.equal(matrix, matrix.T) and bool((matrix.diagonal() == 0).all())
    assert visited == distance.computed < 12 * 11 // 2
    with pytest.raises(ValueError, match=r"bounds must be a square \(N, N\) matrix, got shape \(3, 2\)"):
        nearest_within(torch.zeros(3, 2), distance)
