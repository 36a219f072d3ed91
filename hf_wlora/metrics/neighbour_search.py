"""Distance matrices computed only where the generation metrics read them: a search pruned by lower bounds.

MMD, COV, 1-NNA and the copy fraction (`point_clouds.generation_metrics_from_distances`) read nothing but minima off
the sample-to-reference (S, R) and sample-to-sample (S, S) matrices: each reference's closest sample, each sample's
closest reference, each cloud's nearest other cloud. When a lower bound on every pair's distance costs far less than
the distance itself (the exact EMD's bound, `point_clouds.emd_lower_bounds`, is a k-d tree query; the EMD an
assignment problem), most pairs can be ruled out without computing them: a pair whose bound exceeds every minimum
it could take part in is none of them.

`nearest_neighbour_matrices` visits the pairs in increasing order of their bounds and computes a pair only while its
bound is at most a minimum it takes part in, as found so far. An entry it skips keeps its bound (or the tighter one
a distance function returned instead), which is strictly above the final minimum of its row and of its column in
the sample-to-reference matrix, and above what could change 1-NNA in the sample-to-sample one, so the metrics read
off the returned matrices are the numbers the full matrices give, ties included (`tests/test_neighbour_search.py`
and `tests/test_metrics_point_clouds.py` check this against the full matrices). `nearest_within` does the same for
one set's own matrix (the references'), whose rows' minima are all the metrics read.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import NamedTuple

import torch
from tqdm.auto import tqdm

PairDistances = Callable[[torch.Tensor, torch.Tensor, torch.Tensor], torch.Tensor]
"""(rows (B,), columns (B,), limits (B,)) -> (B,): the distance of each pair (rows[k], columns[k]), or, where that
exceeds limits[k], any lower bound on it that also exceeds limits[k] (a distance function with a tighter bound than
the search's need not solve a pair it can prove useless)."""


class NeighbourMatrices(NamedTuple):
    """The matrices of `nearest_neighbour_matrices` and how many of their pairs it handed to the distance functions.

    Attributes:
        sample_to_reference: (S, R) distances where they can be a row's or a column's minimum, the pair's lower
            bound elsewhere.
        sample_to_sample: (S, S) distances where they can decide whether a sample's nearest other cloud is a sample,
            the pair's lower bound elsewhere; symmetric, with a zero diagonal.
        visited_pairs: pairs handed to a distance function (each unordered sample pair counted once).
        total_pairs: S x R + S (S - 1) / 2, what the full matrices compute.
    """

    sample_to_reference: torch.Tensor
    sample_to_sample: torch.Tensor
    visited_pairs: int
    total_pairs: int


def nearest_neighbour_matrices(
    cross_bounds: torch.Tensor,
    sample_bounds: torch.Tensor,
    cross_distance: PairDistances,
    sample_distance: PairDistances,
    batch_size: int = 1,
    progress: bool = False,
) -> NeighbourMatrices:
    """The (S, R) and (S, S) matrices with every value the generation metrics read, computing few pairs.

    Args:
        cross_bounds: (S, R) lower bounds on the sample-to-reference distances.
        sample_bounds: (S, S) lower bounds on the sample-to-sample distances (symmetric; the diagonal is ignored).
        cross_distance: computes sample-to-reference distances of pairs (sample indices, reference indices).
        sample_distance: computes sample-to-sample distances of pairs (sample indices, sample indices).
        batch_size: pairs handed to a distance function at once (e.g. one per thread it runs on). Larger batches
            decide from what was known a batch earlier, so they may compute a few more pairs; the result is the same.
        progress: show a progress bar over the candidate pairs.

    First the sample-to-reference pairs: each reference's closest sample (MMD, and the reference's nearest
    neighbour among the samples) and each sample's closest reference (COV, the copy fraction), exact in value and
    index. Then the sample pairs, for 1-NNA, which reads off them only whether a sample's nearest other cloud is a
    sample or a reference: a sample is settled by the first other sample found at most as far as its closest
    reference (ties go to samples), or by ruling every other sample out. Entries not computed hold their bound, which
    is above the closest reference of an unsettled sample. The matrices have the bounds' dtype.
    """
    if cross_bounds.ndim != 2:
        raise ValueError(f"cross_bounds must be an (S, R) matrix, got shape {tuple(cross_bounds.shape)}.")
    num_samples, num_references = cross_bounds.shape
    if sample_bounds.shape != (num_samples, num_samples):
        raise ValueError(
            f"sample_bounds has shape {tuple(sample_bounds.shape)}; with {num_samples} samples in cross_bounds "
            f"{tuple(cross_bounds.shape)} it must be ({num_samples}, {num_samples})."
        )
    if batch_size < 1:
        raise ValueError(f"batch_size must be at least 1, got {batch_size}.")
    cross = cross_bounds.clone()
    cross_rows = torch.arange(num_samples).repeat_interleave(num_references)
    cross_columns = torch.arange(num_references).repeat(num_samples)
    total = len(cross_rows) + num_samples * (num_samples - 1) // 2
    with tqdm(total=total, desc="nearest-neighbour distances", disable=not progress) as bar:
        closest_reference = [math.inf] * num_samples  # per sample: its row's minimum so far
        closest_sample = [math.inf] * num_references  # per reference: its column's minimum so far
        minima = (closest_reference, closest_sample)
        visited = _visit(cross, cross_rows, cross_columns, cross_distance, minima, _lower, batch_size, bar)
        # per sample, the distance a sample must be within to be its nearest neighbour; -inf once one is found
        unsettled = list(closest_reference)
        samples, within = _visit_one_set(sample_bounds, sample_distance, unsettled, _settle, batch_size, bar)
    return NeighbourMatrices(cross, samples, visited + within, total)


def nearest_within(
    bounds: torch.Tensor, distance: PairDistances, batch_size: int = 1, progress: bool = False
) -> tuple[torch.Tensor, int]:
    """The (N, N) matrix of one set's distances with every row's minimum exact in value and column (the diagonal
    aside), computing few pairs: what the generation metrics read off the references' own matrix (each reference's
    nearest other reference, for 1-NNA and the copy fraction).

    `bounds` (N, N) are lower bounds on the distances (symmetric; the diagonal is ignored); `distance` computes pairs
    of the set as in `nearest_neighbour_matrices`, whose arguments `batch_size` and `progress` mean the same. Returns
    the matrix (symmetric, zero diagonal, the bounds' dtype; entries not computed hold a bound strictly above their
    row's and column's minima) and the number of pairs handed to `distance`.
    """
    if bounds.ndim != 2 or bounds.shape[0] != bounds.shape[1]:
        raise ValueError(f"bounds must be a square (N, N) matrix, got shape {tuple(bounds.shape)}.")
    if batch_size < 1:
        raise ValueError(f"batch_size must be at least 1, got {batch_size}.")
    size = len(bounds)
    with tqdm(total=size * (size - 1) // 2, desc="nearest-neighbour distances", disable=not progress) as bar:
        minima = [math.inf] * size  # per cloud: its row's (and column's) minimum so far
        return _visit_one_set(bounds, distance, minima, _lower, batch_size, bar)


def _visit_one_set(
    bounds: torch.Tensor,
    distance: PairDistances,
    limits: list[float],
    update: Callable[[float, float], float],
    batch_size: int,
    bar: tqdm,
) -> tuple[torch.Tensor, int]:
    """`_visit` over the pairs of one set (the upper triangle of `bounds`, each cloud's limit serving as its row's
    and its column's); returns the symmetric matrix, zero on the diagonal, and the pairs handed to `distance`."""
    size = len(bounds)
    matrix = bounds.clone()
    rows, columns = torch.triu_indices(size, size, offset=1)
    visited = _visit(matrix, rows, columns, distance, (limits, limits), update, batch_size, bar)
    matrix.triu_(diagonal=1)
    return matrix + matrix.T, visited


def _lower(limit: float, value: float) -> float:
    """A minimum so far, given one more value."""
    return min(limit, value)


def _settle(limit: float, value: float) -> float:
    """A sample's limit given another sample's distance: settled (-inf, nothing more to find) if within it."""
    return -math.inf if value <= limit else limit


def _visit(
    matrix: torch.Tensor,
    rows: torch.Tensor,
    columns: torch.Tensor,
    distance: PairDistances,
    limits: tuple[list[float], list[float]],
    update: Callable[[float, float], float],
    batch_size: int,
    bar: tqdm,
) -> int:
    """Write into `matrix` (holding the bounds) the distance of every pair (rows[k], columns[k]) whose bound is at
    most its row's or its column's limit (`limits`: per row, per column; one list twice for the pairs of one set),
    in increasing order of the bounds, passing each distance found to `update` with the limits of its row and
    column. A value above the pair's limit (a distance, or the tighter bound `distance` may return instead) changes
    no limit under either update. Returns the pairs handed to `distance`."""
    row_limits, column_limits = limits
    bounds = matrix[rows, columns]
    order = torch.argsort(bounds, stable=True).tolist()
    bounds, row_list, column_list = bounds.tolist(), rows.tolist(), columns.tolist()
    handed = position = visited = 0
    while position < len(order):
        batch, batch_limits = [], []
        while position < len(order) and len(batch) < batch_size:
            pair = order[position]
            position += 1
            limit = max(row_limits[row_list[pair]], column_limits[column_list[pair]])
            if bounds[pair] <= limit:
                batch.append(pair)
                batch_limits.append(limit)
        bar.update(position - visited)
        visited = position
        if not batch:
            break
        limits_tensor = torch.tensor(batch_limits, dtype=torch.float64)
        values = distance(rows[batch], columns[batch], limits_tensor).to(matrix.dtype)
        matrix[rows[batch], columns[batch]] = values
        for pair, value in zip(batch, values.tolist(), strict=True):
            row, column = row_list[pair], column_list[pair]
            row_limits[row] = update(row_limits[row], value)
            column_limits[column] = update(column_limits[column], value)
        handed += len(batch)
    return handed
