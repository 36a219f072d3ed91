"""3-D generation metrics: HyperDiffusion's protocol on point clouds sampled from meshes, as the paper evaluates 3-D
generation.

The protocol: sample 2048 area-weighted surface points per mesh (`sample_point_clouds`), normalise every cloud by
its own mean and one scalar std (`normalize_point_clouds`), build the sample-to-reference, sample-to-sample and
reference-to-reference distance matrices with Chamfer distance (`pairwise_chamfer`) or earth mover's distance
(`pairwise_emd`), and read MMD, COV and 1-NNA off them (`generation_metrics_from_distances`).
`point_cloud_generation_metrics` does the last three steps in one call.

HyperDiffusion's released code never computed EMD, so this module pins its own: an entropic optimal-transport solver
(log-domain Sinkhorn, batched over pairs) whose answer is certified against a dual bound (`earth_movers_distance`),
checked against the exact assignment solver (`exact_emd`).
"""

from __future__ import annotations

import functools
import logging
import math
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import TYPE_CHECKING

import numpy as np
import torch
from tqdm.auto import tqdm

from .memorization import DEFAULT_COPY_RATIO, copy_fraction
from .neighbour_search import PairDistances, nearest_neighbour_matrices, nearest_within

if TYPE_CHECKING:
    import trimesh

logger = logging.getLogger(__name__)

# --- Sinkhorn settings for the earth mover's distance (pinned; see `earth_movers_distance`) --------------------------
SINKHORN_EPSILON = 1e-3
"""Final entropic temperature, relative to the pair's mean point-to-point distance."""
SINKHORN_TOLERANCE = 1e-2
"""Stop once (plan cost - dual bound) <= tolerance * plan cost: their midpoint is then within tolerance / 2 of EMD."""
SINKHORN_MAX_ITERATIONS = 10_000
"""Iteration budget per batch of pairs; a pair still above the tolerance then returns its midpoint anyway (logged)."""
EMD_BOUND_SLACK = 1e-6
"""Relative amount the EMD's lower bounds are lowered by, so that rounding never lifts one above its EMD; times a
pair's mean point distance, also the least amount by which a dual bound must pass its limit to rule the pair out."""
_EPSILON_START = 1.0  # first temperature (relative, as above): the plan starts nearly uniform
_EPSILON_DECAY = 0.5  # temperature multiplier between annealing stages
_ITERATIONS_PER_EPSILON = 10  # Sinkhorn iterations per annealing stage
_OVER_RELAXATION = 1.8  # omega of over-relaxed Sinkhorn (Thibault et al. 2021); 1 is plain Sinkhorn
_CHECK_EVERY = 10  # iterations between convergence checks at the final temperature
_GAP_FLOOR = 1e-2  # the tolerance is relative to max(plan cost, this fraction of the mean distance): float32 noise
_EXPONENT_FLOOR = -80.0  # exp(-80) is negligible mass yet above float32's denormals, which are very slow on CPUs
# temperatures (relative, as above) of `_sinkhorn_dual_bounds`' iterations: from 0.1 to 0.02 in five steps gave dual
# bounds at 0.97 of the exact EMD typically on the 3-D study's clouds (benchmarks/RESULTS.md, issue 15)
_DUAL_BOUND_TEMPERATURES = (0.1, 0.067, 0.045, 0.03, 0.02)

_DIRECT_DISTANCES = "donot_use_mm_for_euclid_dist"  # cdist's matmul shortcut loses precision on small distances
_DISTANCES = ("chamfer", "emd", "emd_exact")


# --- sampling and normalisation ---------------------------------------------------------------------------------------


def sample_point_clouds(
    meshes: Sequence[trimesh.Trimesh], num_points: int = 2048, seed: int = 0, progress: bool = False
) -> torch.Tensor:
    """Sample `num_points` area-weighted surface points from each mesh: a (N, num_points, 3) float32 tensor.

    Mesh `i` is sampled with seed `seed + i`, so every cloud is reproducible and the clouds of repeated meshes still
    differ like independent draws. A mesh that is None (a failed extraction) or has no surface area raises a
    ValueError naming its index: drop it or count it as a failure before computing metrics, rather than silently
    comparing a placeholder cloud.
    """
    import trimesh

    if num_points < 1:
        raise ValueError(f"num_points must be at least 1, got {num_points}.")
    if len(meshes) == 0:
        raise ValueError("meshes is empty; pass at least one mesh to sample.")
    clouds = []
    for index, mesh in enumerate(tqdm(meshes, desc="sampling point clouds", disable=not progress)):
        if mesh is None:
            raise ValueError(f"meshes[{index}] is None; drop failed mesh extractions before sampling point clouds.")
        if not isinstance(mesh, trimesh.Trimesh):
            raise ValueError(
                f"meshes[{index}] is a {type(mesh).__name__}, not a trimesh.Trimesh; "
                "merge a scene into one mesh first (scene.to_mesh())."
            )
        area = float(mesh.area)
        if not area > 0.0 or not math.isfinite(area):
            raise ValueError(
                f"meshes[{index}] has no surface area to sample (area {area}, {len(mesh.faces)} faces); "
                "drop empty or degenerate meshes before sampling point clouds."
            )
        points, _ = trimesh.sample.sample_surface(mesh, num_points, seed=seed + index)
        clouds.append(torch.as_tensor(np.asarray(points), dtype=torch.float32))
    return torch.stack(clouds)


def normalize_point_clouds(clouds: torch.Tensor) -> torch.Tensor:
    """Centre each cloud on its mean and divide it by one scalar: the std of all its centred coordinates.

    One scalar per cloud keeps the shape's aspect ratio (a per-axis std would inflate thin parts such as wings). The
    std is torch's default (correction 1) over the 3P centred coordinates, as in HyperDiffusion's `pc.flatten().std()`;
    HyperDiffusion takes that std before centring each axis, which makes its scale depend on where the cloud sits,
    whereas this one is translation-invariant (the two agree when the cloud's mean has equal coordinates).
    Input (N, P, 3) with P >= 2; a cloud whose points all coincide has no scale and raises a ValueError.
    """
    clouds = _as_clouds("clouds", clouds, keep_graph=True)
    if clouds.shape[1] < 2:
        raise ValueError(f"clouds need at least 2 points each to have a std, got shape {tuple(clouds.shape)}.")
    centred = clouds - clouds.mean(dim=1, keepdim=True)
    std = centred.flatten(1).std(dim=1)
    degenerate = torch.nonzero(std <= 0).flatten()
    if len(degenerate):
        raise ValueError(
            f"clouds[{int(degenerate[0])}] has all its points at one location, so it has no scale to normalise; "
            "drop degenerate clouds (e.g. from collapsed meshes) first."
        )
    return centred / std[:, None, None]


# --- distances --------------------------------------------------------------------------------------------------------


def pairwise_chamfer(
    clouds_a: torch.Tensor,
    clouds_b: torch.Tensor | None = None,
    batch_size: int = 16,
    progress: bool = False,
    device: torch.device | str | None = None,
    method: str | None = None,
) -> torch.Tensor:
    """(N, M) matrix of Chamfer distances between every cloud of `clouds_a` (N, P, 3) and of `clouds_b` (M, Q, 3).

    Same convention as `hf_wlora.metrics.reconstruction.chamfer_distance`: mean of squared nearest-neighbour distances
    a->b plus the same b->a. Without `clouds_b` the clouds are compared with each other: the matrix is symmetric and
    its diagonal is 0. Two exact methods, `method=None` picking the faster one for `device` (default: where the
    clouds are):

    - "kdtree" (CPUs): one k-d tree per cloud (scipy), each queried once with every point of the other set, in
      float64, on `torch.get_num_threads()` threads: O(P log Q) per pair instead of P x Q distances (14x faster than
      "cdist" for 2,048-point clouds on a CPU, `benchmarks/bench_metrics_3d.py`).
    - "cdist" (GPUs): all P x Q distances of `batch_size` pairs at once (16 MiB a pair for 2048-point clouds, which
      bounds memory) on `device`, each distance computed directly in the clouds' precision.
    """
    if method is None:
        compute_device = torch.device(device) if device is not None else torch.as_tensor(clouds_a).device
        method = "kdtree" if compute_device.type == "cpu" else "cdist"
    if method == "cdist":
        return _pairwise(clouds_a, clouds_b, _chamfer_batch, batch_size, progress, device, "pairwise Chamfer")
    if method != "kdtree":
        raise ValueError(f"method must be 'kdtree', 'cdist' or None, got {method!r}.")
    if batch_size < 1:
        raise ValueError(f"batch_size must be at least 1, got {batch_size}.")
    first = _as_clouds("clouds_a", clouds_a)
    second = first if clouds_b is None else _as_clouds("clouds_b", clouds_b)
    dtype = torch.promote_types(first.dtype, second.dtype)
    forward = _mean_nearest(first, second, squared=True, progress=progress)  # [i, j]: a_i's points to b_j
    if clouds_b is None:
        return (forward + forward.T).fill_diagonal_(0.0).to(dtype)
    return (forward + _mean_nearest(second, first, squared=True, progress=progress).T).to(dtype)


def _mean_nearest(queries: torch.Tensor, clouds: torch.Tensor, squared: bool, progress: bool) -> torch.Tensor:
    """(N, M) float64: the mean over cloud i of `queries` of each point's distance (`squared`: squared distance) to
    its nearest point of cloud j of `clouds` (one k-d tree per cloud j, queried with all N clouds' points at once)."""
    from scipy.spatial import cKDTree

    points = queries.detach().cpu().double().numpy()
    flat = points.reshape(-1, 3)
    workers = max(1, torch.get_num_threads())
    columns = []
    for cloud in tqdm(clouds.detach().cpu().double().numpy(), desc="nearest points", disable=not progress):
        distances, _ = cKDTree(cloud).query(flat, k=1, workers=workers)
        distances = np.square(distances) if squared else distances
        columns.append(torch.from_numpy(distances.reshape(points.shape[:2]).mean(axis=1)))
    return torch.stack(columns, dim=1)


def exact_emd(cloud_a: torch.Tensor, cloud_b: torch.Tensor) -> float:
    """Exact earth mover's distance between two (P, 3) clouds of equal size, by the Hungarian-type assignment solver.

    EMD = min over bijections of the mean Euclidean (not squared) distance between matched points. This is
    `scipy.optimize.linear_sum_assignment` on the float64 distance matrix: the reference for `earth_movers_distance`,
    and the faster option on CPUs (0.3-2.5 s per pair of 2048-point clouds; it runs on one core).
    """
    a, b = _as_cloud_pair(cloud_a, cloud_b)
    return float(_exact_emd_pairs(a[None], b[None])[0][0])


def _exact_emd_pairs(a: torch.Tensor, b: torch.Tensor, limits: torch.Tensor | None = None) -> tuple[torch.Tensor, int]:
    """`exact_emd` of the pairs (a[k], b[k]) of two (B, P, 3) checked batches, and how many were solved.

    With `limits` (B,), a pair whose EMD a dual point of its assignment problem proves above limits[k] gets that
    lower bound instead of being solved: first the reduction bound (`_reduction_bounds`, about 1 ms for 512-point
    clouds), then for the pairs it leaves the Sinkhorn dual bound (`_sinkhorn_dual_bounds`, a few ms), against 20-40
    ms for the assignment. The pairs are taken one per torch thread at a time, so that many pairs' memory is held at
    once: the P x P float64 distance matrix and, while bounding, one temporary as large (a peak of about 75 MiB a
    pair at 2,048 points); a slice's remaining pairs are solved on the threads at once (scipy's solver releases the
    GIL).
    """
    threads = max(1, torch.get_num_threads())
    values, solved = [], 0
    for start in range(0, len(a), threads):
        part = slice(start, start + threads)
        part_values, part_solved = _exact_emd_slice(a[part], b[part], None if limits is None else limits[part])
        values.extend(part_values)
        solved += part_solved
    return torch.tensor(values, dtype=torch.float64), solved


def _exact_emd_slice(a: torch.Tensor, b: torch.Tensor, limits: torch.Tensor | None) -> tuple[list[float], int]:
    """`_exact_emd_pairs` of at most one pair per torch thread: the values and how many were solved."""
    from scipy.optimize import linear_sum_assignment

    distances = torch.cdist(a.double().cpu(), b.double().cpu(), compute_mode=_DIRECT_DISTANCES)
    values = [math.nan] * len(a)
    to_solve = torch.arange(len(a))
    if limits is not None:
        finite = torch.isfinite(limits)  # no bound is above an infinite limit (a search's first pairs)
        pending, to_solve = to_solve[finite], to_solve[~finite]
        # Above by more than float32 rounds (relative), so a stored bound stays above its limit, and by more than the
        # bound's own float64 rounding (absolute, in the pair's distance scale): a pair of clouds that are one
        # another's permutation has EMD 0, and its Sinkhorn dual bound can round to +1e-19 against a limit of 0.
        margins = EMD_BOUND_SLACK * distances.mean(dim=(1, 2))
        for dual_bounds in (_reduction_bounds, _sinkhorn_dual_bounds):  # the cheaper one first
            bounds = dual_bounds(_rows(distances, pending)) * (1.0 - EMD_BOUND_SLACK)
            above = bounds > limits[pending].double() * (1.0 + EMD_BOUND_SLACK) + margins[pending]
            for pair, bound in zip(pending[above].tolist(), bounds[above].tolist(), strict=True):
                values[pair] = bound
            pending = pending[~above]
        to_solve = torch.cat([to_solve, pending])
    matrices = distances.numpy()

    def solve(pair: int) -> float:
        rows, columns = linear_sum_assignment(matrices[pair])
        return float(matrices[pair][rows, columns].mean())

    pairs = to_solve.tolist()  # at most one per thread: one worker each
    if len(pairs) <= 1:
        solved = [solve(pair) for pair in pairs]
    else:
        with ThreadPoolExecutor(len(pairs)) as pool:
            solved = list(pool.map(solve, pairs))
    for pair, value in zip(pairs, solved, strict=True):
        values[pair] = value
    return values, len(pairs)


def _rows(batch: torch.Tensor, indices: torch.Tensor) -> torch.Tensor:
    """batch[indices] for ascending indices: a view when they are a contiguous run (mostly: all of a slice), so a
    slice's distance matrices are not copied."""
    if len(indices) and int(indices[-1]) - int(indices[0]) + 1 == len(indices):
        return batch[int(indices[0]) : int(indices[-1]) + 1]
    return batch[indices]


def _reduction_bounds(distances: torch.Tensor) -> torch.Tensor:
    """Lower bounds (B,) on the EMD of (B, P, P) point-distance matrices: the assignment problem's dual point that
    gives each row its minimum, then each column the minimum of what is left, or the same with columns first,
    whichever is larger (`_c_transform_bounds` of zero potentials). On the 3-D study's clouds the EMD is 1.04-1.09
    times this bound at closest and 1.2-1.3 times typically (1.1-1.2 and 1.4 times `emd_lower_bounds`, which needs
    no distance matrix)."""
    zero = distances.new_zeros(len(distances), 1, distances.shape[2])
    return torch.maximum(_c_transform_bounds(distances, zero), _c_transform_bounds(distances.transpose(1, 2), zero))


def _sinkhorn_dual_bounds(distances: torch.Tensor) -> torch.Tensor:
    """Lower bounds (B,) on the EMD of (B, P, P) point-distance matrices, tighter than `_reduction_bounds`: a few
    float32 Sinkhorn iterations at falling temperatures (`_DUAL_BOUND_TEMPERATURES`) find column potentials near the
    optimal dual's, and `_c_transform_bounds` turns them into a feasible dual point in float64, a valid bound however
    rough the potentials. On the 3-D study's clouds where the reduction bound could not rule a pair out, this bound
    was 0.97 of the EMD typically (0.79 for the reduction bound), at about a fifth of an assignment's cost."""
    scale = distances.mean(dim=(1, 2), keepdim=True).clamp_min(torch.finfo(distances.dtype).tiny)
    cost = torch.div(distances, scale, out=distances.new_empty(distances.shape, dtype=torch.float32))  # no float64 copy
    f = cost.new_zeros(len(cost), cost.shape[1], 1)
    g = cost.new_zeros(len(cost), 1, cost.shape[2])
    for temperature in _DUAL_BOUND_TEMPERATURES:
        f, g = _sinkhorn_iteration(f, g, cost, temperature, 1.0)
    del cost  # released before the c-transforms' float64 temporary: one P x P temporary at a time
    return _c_transform_bounds(distances, g.double() * scale)


def _c_transform_bounds(distances: torch.Tensor, g: torch.Tensor) -> torch.Tensor:
    """mean(u) + mean(v) for u_i = min_j (c_ij - g_j) and v_j = min_i (c_ij - u_i), of (B, P, P) distances c and
    column potentials g (B, 1, P): a feasible point of the assignment problem's dual (u_i + v_j <= c_ij), so by weak
    duality at most the optimal mean matched distance, the EMD."""
    u = (distances - g).amin(dim=2, keepdim=True)
    v = (distances - u).amin(dim=1, keepdim=True)
    return u.mean(dim=(1, 2)) + v.mean(dim=(1, 2))


def emd_lower_bounds(clouds_a: torch.Tensor, clouds_b: torch.Tensor | None = None) -> torch.Tensor:
    """(N, M) float64 lower bounds on the EMD between every cloud of `clouds_a` (N, P, 3) and of `clouds_b` (M, P, 3),
    for the price of k-d tree queries (no assignment problem): the larger of the two directed mean nearest-point
    distances.

    A bijection matches each point of one cloud with some point of the other, never nearer than its nearest one, so
    the mean matched distance of the optimal bijection (the EMD) is at least the mean nearest-point distance, either
    way round. On the 3-D study's clouds the EMD is 1.1-2.8 times this bound (1.4 typically). The bounds are lowered
    by a relative `EMD_BOUND_SLACK` (1e-6) so that rounding (the k-d tree's distances against the solver's, float32
    matrices) never lifts one above the EMD it bounds. Without `clouds_b` the clouds are bounded against each other:
    the matrix is symmetric and its diagonal is 0. The clouds are used as given (not normalised).
    """
    first = _as_clouds("clouds_a", clouds_a)
    second = first if clouds_b is None else _as_clouds("clouds_b", clouds_b)
    _check_equal_sizes(first.shape[1] == second.shape[1], f"{first.shape[1]} and {second.shape[1]} points")
    forward = _mean_nearest(first, second, squared=False, progress=False)  # [i, j]: a_i's points to b_j
    backward = forward.T if clouds_b is None else _mean_nearest(second, first, squared=False, progress=False).T
    bounds = torch.maximum(forward, backward).mul_(1.0 - EMD_BOUND_SLACK)
    return bounds.fill_diagonal_(0.0) if clouds_b is None else bounds


def earth_movers_distance(
    cloud_a: torch.Tensor,
    cloud_b: torch.Tensor,
    epsilon: float = SINKHORN_EPSILON,
    tolerance: float = SINKHORN_TOLERANCE,
    max_iterations: int = SINKHORN_MAX_ITERATIONS,
    device: torch.device | str | None = None,
) -> float:
    """Earth mover's distance between two (P, 3) clouds of equal size, by entropic optimal transport (Sinkhorn).

    Convention (that of PointFlow and the HyperDiffusion-era evaluation code): EMD = min over bijections of the
    mean Euclidean (not squared) distance between matched points. For uniform weights on equal-size clouds the
    optimal transport plan can be taken to be a permutation, so this is also the optimal transport cost.

    The pinned algorithm (HyperDiffusion's released code never computed EMD):
    1. Costs are the Euclidean distances divided by their mean over all pairs of points, so the settings below are
       scale-free and EMD(s a, s b) = s EMD(a, b).
    2. Log-domain Sinkhorn with over-relaxation (omega 1.8) on uniform marginals, with the entropic temperature
       annealed from 1 by halving every 10 iterations down to `epsilon` (1e-3 of the mean distance).
    3. At `epsilon`, every 10 iterations, bracket the EMD: round the plan onto the exact marginals (Altschuler, Weed
       and Rigollet 2017) and take its cost, an upper bound (it is a feasible plan); take the c-transform of the
       dual potential, a lower bound (weak duality). Stop when upper - lower <= `tolerance` * upper (1e-2), or
       <= `tolerance` * 1% of the mean distance for near-identical clouds, where float32 noise sets the floor.
    4. Return the midpoint of the bracket, within half its width of the EMD: 0.5% once converged. (The rounded
       plan alone needs about 2.5 times the iterations to get as close from above.) A pair still above the
       tolerance after `max_iterations` returns its midpoint with a warning giving the width.
    Measured against `exact_emd`: 0.06-0.5% above it on 64-2048-point clouds (tests/test_metrics_point_clouds.py
    checks 64 and 128 points).

    Cost: each iteration is two log-sum-exps over the P x P matrix (about 6 ms for 2048 points on two CPU cores).
    Clouds of different shapes converge in one to three hundred iterations; two samplings of one shape (small EMD,
    many near-ties) need 1,500-2,500. On CPUs that is slower than `exact_emd` for 2048 points (1-15 s per pair
    against 0.3-2.5 s); batched on a GPU (`pairwise_emd(..., device="cuda")`) it is the fast option.
    """
    a, b = _as_cloud_pair(cloud_a, cloud_b)
    device = torch.device(device) if device is not None else a.device
    cost = torch.cdist(a[None].to(device), b[None].to(device), compute_mode=_DIRECT_DISTANCES)
    lower, upper = _sinkhorn_bounds(cost, epsilon, tolerance, max_iterations)
    return float((lower + upper)[0] / 2)


def pairwise_emd(
    clouds_a: torch.Tensor,
    clouds_b: torch.Tensor | None = None,
    batch_size: int = 8,
    progress: bool = False,
    device: torch.device | str | None = None,
    method: str = "sinkhorn",
    epsilon: float = SINKHORN_EPSILON,
    tolerance: float = SINKHORN_TOLERANCE,
    max_iterations: int = SINKHORN_MAX_ITERATIONS,
) -> torch.Tensor:
    """(N, M) matrix of earth mover's distances between the clouds of `clouds_a` (N, P, 3) and `clouds_b` (M, P, 3).

    `method="sinkhorn"` is `earth_movers_distance` batched over `batch_size` pairs at once on `device` (each pair needs
    a few P x P float32 matrices, about 64 MiB for 2048 points); `method="exact"` runs `exact_emd` on the CPU, the
    `batch_size` pairs of a batch at once on `torch.get_num_threads()` threads, which is the faster of the two without a
    GPU. Same convention either way: mean Euclidean distance between
    matched points under the optimal bijection. Without `clouds_b` the clouds are compared with each other: only the
    upper triangle is computed, the matrix is symmetric and its diagonal is 0.
    """
    if method == "sinkhorn":
        _check_sinkhorn_settings(epsilon, tolerance, max_iterations)

        def distance(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
            distances = torch.cdist(a, b, compute_mode=_DIRECT_DISTANCES)
            lower, upper = _sinkhorn_bounds(distances, epsilon, tolerance, max_iterations)
            return (lower + upper) / 2

    elif method == "exact":

        def distance(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
            return _exact_emd_pairs(a, b)[0]

    else:
        raise ValueError(f"method must be 'sinkhorn' or 'exact', got {method!r}.")
    first = _as_clouds("clouds_a", clouds_a)
    second = first if clouds_b is None else _as_clouds("clouds_b", clouds_b)
    _check_equal_sizes(first.shape[1] == second.shape[1], f"{first.shape[1]} and {second.shape[1]} points")
    others = None if clouds_b is None else second
    return _pairwise(first, others, distance, batch_size, progress, device, f"pairwise EMD ({method})")


# --- metrics ----------------------------------------------------------------------------------------------------------


def generation_metrics_from_distances(
    sample_to_reference: torch.Tensor,
    sample_to_sample: torch.Tensor,
    reference_to_reference: torch.Tensor,
    copy_ratio: float = DEFAULT_COPY_RATIO,
) -> dict[str, float]:
    """MMD, COV and 1-NNA from the (S, R), (S, S) and (R, R) distance matrices of S samples and R references.

    - "mmd": mean over references of the distance to the closest sample (lower is better: every reference is
      matched by some sample).
    - "cov": fraction of references that are the nearest reference of at least one sample (higher is better:
      samples spread over the references instead of collapsing onto a few).
    - "1-nna": leave-one-out 1-nearest-neighbour accuracy of labelling every cloud of samples ∪ references as
      sample or reference by its nearest other cloud (its own distance excluded). 0.5 is ideal (the sets are
      indistinguishable), 1.0 means fully separable; below 0.5 means samples sit closer to references than to each
      other (0.0 for samples that copy the references).
    - "copy_fraction": the fraction of samples that copy a reference (`memorization.copy_fraction` at `copy_ratio`;
      NaN with a single reference). The ratio applies to the matrices' values: for a squared distance such as
      Chamfer's, pass the square of the ratio meant for distances (`point_cloud_generation_metrics` does).
    Ties go to the lower index, samples ordered before references (as PointFlow concatenates them). The diagonals of
    the two square matrices are ignored. Pure functions of the matrices, so any distance works.
    """
    cross = _as_distances("sample_to_reference", sample_to_reference)
    samples = _as_distances("sample_to_sample", sample_to_sample)
    references = _as_distances("reference_to_reference", reference_to_reference)
    num_samples, num_references = cross.shape
    if samples.shape != (num_samples, num_samples) or references.shape != (num_references, num_references):
        raise ValueError(
            f"sample_to_sample {tuple(samples.shape)} and reference_to_reference {tuple(references.shape)} must be "
            f"({num_samples}, {num_samples}) and ({num_references}, {num_references}) to match sample_to_reference "
            f"{tuple(cross.shape)}; pass the matrices in the order (S, R), (S, S), (R, R)."
        )
    mmd = cross.min(dim=0).values.mean()
    cov = cross.argmin(dim=1).unique().numel() / num_references
    everything = torch.cat([torch.cat([samples, cross], dim=1), torch.cat([cross.T, references], dim=1)], dim=0)
    everything.fill_diagonal_(math.inf)
    is_sample = torch.arange(num_samples + num_references) < num_samples
    nearest = everything.argmin(dim=1)
    accuracy = (is_sample[nearest] == is_sample).double().mean()
    copies = copy_fraction(cross, references, copy_ratio) if num_references >= 2 else math.nan
    return {"mmd": float(mmd), "cov": float(cov), "1-nna": float(accuracy), "copy_fraction": copies}


def point_cloud_distances(
    clouds_a: torch.Tensor,
    clouds_b: torch.Tensor | None = None,
    distance: str = "chamfer",
    normalize: bool = True,
    progress: bool = False,
    batch_size: int | None = None,
    device: torch.device | str | None = None,
    nearest_only: bool = False,
) -> torch.Tensor:
    """The (N, M) matrix of `distance` between clouds (N, P, 3) and (M, P, 3), each cloud normalised by
    `normalize_point_clouds` first (unless `normalize=False`); without `clouds_b`, the (N, N) matrix of the clouds
    with each other. `distance`: "chamfer" (`pairwise_chamfer`), "emd" (`pairwise_emd`, Sinkhorn) or "emd_exact"
    (`pairwise_emd(method="exact")`); `batch_size` and `device` are passed on (None: the function's default).

    `nearest_only` (a set's own "emd_exact" matrix only): each row's minimum exact in value and column and lower
    bounds elsewhere (`neighbour_search.nearest_within`), all that `point_cloud_generation_metrics` reads off its
    `reference_distances`, for a fraction of the assignment problems (33 of 496 for the 3-D study's 32 shapes).
    """
    if distance not in _DISTANCES:
        raise ValueError(f"distance must be one of {_DISTANCES}, got {distance!r}.")
    if nearest_only and (distance != "emd_exact" or clouds_b is not None):
        raise ValueError(
            f"nearest_only applies to a set's own exact EMD matrix (distance='emd_exact', no clouds_b), got "
            f"distance={distance!r}{' and clouds_b' if clouds_b is not None else ''}; leave it False otherwise."
        )
    clouds = [
        _as_clouds(name, value) for name, value in (("clouds_a", clouds_a), ("clouds_b", clouds_b)) if value is not None
    ]
    if normalize:
        clouds = [normalize_point_clouds(value) for value in clouds]
    if nearest_only:
        return _nearest_exact_emd_within(clouds[0], progress)
    options: dict = {"progress": progress, "device": device}
    if batch_size is not None:
        options["batch_size"] = batch_size
    if distance == "chamfer":
        return pairwise_chamfer(*clouds, **options)
    return pairwise_emd(*clouds, method="exact" if distance == "emd_exact" else "sinkhorn", **options)


def point_cloud_generation_metrics(
    samples: torch.Tensor,
    references: torch.Tensor,
    distance: str = "chamfer",
    normalize: bool = True,
    progress: bool = False,
    batch_size: int | None = None,
    device: torch.device | str | None = None,
    reference_distances: torch.Tensor | None = None,
    prune: bool = True,
) -> dict[str, float]:
    """MMD, COV and 1-NNA of generated clouds (S, P, 3) against reference clouds (R, P, 3), HyperDiffusion's protocol.

    The three distance matrices are built by `point_cloud_distances` (normalised clouds, `distance` "chamfer", "emd"
    or "emd_exact"). Returns "mmd", "cov", "1-nna" and "copy_fraction" (see `generation_metrics_from_distances`),
    "num_samples" and "num_references". The protocol generates about 1.1x as many samples as references.
    `reference_distances`, the references' (R, R) matrix `point_cloud_distances(references, distance=distance,
    normalize=normalize)` (with `nearest_only=True` for "emd_exact" if you like: only its rows' minima are read),
    may be given to skip computing it again when several generators are compared with the same references.

    With `prune` (the default) the exact EMD ("emd_exact") is computed only for the sample-to-reference and
    sample-to-sample pairs that can be some cloud's nearest neighbour: `emd_lower_bounds` rules the others out
    (`neighbour_search`), and the metrics are the very numbers the full matrices give, for a fraction of the
    assignment problems (6-11% on the 3-D study's samples, `benchmarks/bench_metrics_3d.py`). `prune=False`
    computes every pair. Chamfer (cheap k-d tree queries) and Sinkhorn's EMD (within 0.5% of the EMD, which an exact
    bound cannot rule on) always compute every pair.
    """
    samples = _as_clouds("samples", samples)
    references = _as_clouds("references", references)
    measure = functools.partial(
        point_cloud_distances,
        distance=distance,
        normalize=normalize,
        progress=progress,
        batch_size=batch_size,
        device=device,
    )
    if distance != "chamfer":  # checked before minutes of the references' matrix
        sizes = f"{samples.shape[1]} points per sample and {references.shape[1]} per reference"
        _check_equal_sizes(samples.shape[1] == references.shape[1], sizes)
    pruned = distance == "emd_exact" and prune
    if reference_distances is None:
        reference_distances = measure(references, nearest_only=pruned)
    elif tuple(reference_distances.shape) != (len(references),) * 2:
        raise ValueError(
            f"reference_distances has shape {tuple(reference_distances.shape)}, but there are {len(references)} "
            "references; pass the references' own (R, R) distance matrix."
        )
    if pruned:
        cross, within = _nearest_exact_emd(samples, references, normalize, progress)
    else:
        cross, within = measure(samples, references), measure(samples)
    # Chamfer is a mean of squared point distances: "twice as close" (the copy ratio) is a quarter of it
    copy_ratio = DEFAULT_COPY_RATIO**2 if distance == "chamfer" else DEFAULT_COPY_RATIO
    metrics = generation_metrics_from_distances(cross, within, reference_distances, copy_ratio)
    return {**metrics, "num_samples": len(samples), "num_references": len(references)}


def _nearest_exact_emd(
    samples: torch.Tensor, references: torch.Tensor, normalize: bool, progress: bool
) -> tuple[torch.Tensor, torch.Tensor]:
    """The exact EMD's (S, R) and (S, S) matrices wherever MMD, COV, 1-NNA or the copy fraction read them, and lower
    bounds elsewhere (`neighbour_search.nearest_neighbour_matrices`): the pairs are visited in the order of
    `emd_lower_bounds`, and a pair that bound lets through is solved unless a dual point of its assignment problem rules
    it out (`_exact_emd_pairs`). The clouds are checked, of equal size."""
    if normalize:
        samples, references = normalize_point_clouds(samples), normalize_point_clouds(references)
    dtype = torch.promote_types(samples.dtype, references.dtype)  # that of the full matrices (`_pairwise`)
    solved: list[int] = []
    found = nearest_neighbour_matrices(
        emd_lower_bounds(samples, references).to(dtype),
        emd_lower_bounds(samples).to(dtype),
        _exact_emd_search(samples, references, solved),
        _exact_emd_search(samples, samples, solved),
        batch_size=max(1, torch.get_num_threads()),
        progress=progress,
    )
    logger.info(
        "exact EMD: %d of %d pairs solved (%d could be nearest neighbours by the k-d tree bound)",
        sum(solved),
        found.total_pairs,
        found.visited_pairs,
    )
    return found.sample_to_reference, found.sample_to_sample


def _nearest_exact_emd_within(clouds: torch.Tensor, progress: bool) -> torch.Tensor:
    """A set's own exact EMD matrix with every row's minimum exact and lower bounds elsewhere
    (`neighbour_search.nearest_within`), searched as `_nearest_exact_emd` searches."""
    solved: list[int] = []
    matrix, visited = nearest_within(
        emd_lower_bounds(clouds).to(clouds.dtype),
        _exact_emd_search(clouds, clouds, solved),
        batch_size=max(1, torch.get_num_threads()),
        progress=progress,
    )
    total = len(clouds) * (len(clouds) - 1) // 2
    logger.info("exact EMD within a set: %d of %d pairs solved (%d by the k-d tree bound)", sum(solved), total, visited)
    return matrix


def _exact_emd_search(first: torch.Tensor, second: torch.Tensor, solved: list[int]) -> PairDistances:
    """The pruned searches' distance between clouds of `first` and of `second`: `_exact_emd_pairs` on torch's
    threads, appending to `solved` how many assignment problems each batch solved."""

    def distance(rows: torch.Tensor, columns: torch.Tensor, limits: torch.Tensor) -> torch.Tensor:
        values, count = _exact_emd_pairs(first[rows], second[columns], limits)
        solved.append(count)
        return values

    return distance


# --- helpers ----------------------------------------------------------------------------------------------------------


def _as_clouds(name: str, clouds: torch.Tensor, keep_graph: bool = False) -> torch.Tensor:
    """Check a (N, P, 3) batch of clouds (non-empty, finite) and return it as a float tensor (at least float32),
    detached unless `keep_graph` (`normalize_point_clouds`, which is differentiable): distances are evaluations, and a
    cloud carrying a gradient would otherwise make the Sinkhorn solver keep the graph of every iteration (and the
    exact solver fail on `numpy()`)."""
    clouds = torch.as_tensor(clouds)
    clouds = clouds if keep_graph else clouds.detach()
    if clouds.ndim != 3 or clouds.shape[2] != 3 or clouds.shape[0] == 0 or clouds.shape[1] == 0:
        raise ValueError(
            f"{name} must be a non-empty (N, P, 3) batch of point clouds, got shape {tuple(clouds.shape)}."
        )
    if not clouds.is_floating_point():
        clouds = clouds.float()
    bad = torch.nonzero(~torch.isfinite(clouds).flatten(1).all(dim=1)).flatten()
    if len(bad):
        raise ValueError(f"{name}[{int(bad[0])}] contains NaN or infinite coordinates; drop or regenerate that cloud.")
    return clouds.to(torch.promote_types(clouds.dtype, torch.float32))


def _as_cloud_pair(cloud_a: torch.Tensor, cloud_b: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Check two (P, 3) clouds of equal size for the EMD (non-empty, finite) and return them as float tensors,
    detached (as `_as_clouds`)."""
    pair = []
    for name, cloud in (("cloud_a", cloud_a), ("cloud_b", cloud_b)):
        cloud = torch.as_tensor(cloud).detach()
        if cloud.ndim != 2 or cloud.shape[1] != 3 or len(cloud) == 0:
            raise ValueError(f"{name} must be a non-empty (P, 3) point cloud, got shape {tuple(cloud.shape)}.")
        if not torch.isfinite(cloud).all():
            raise ValueError(f"{name} contains NaN or infinite coordinates; drop or regenerate that cloud.")
        pair.append(cloud.float() if not cloud.is_floating_point() else cloud)
    _check_equal_sizes(pair[0].shape == pair[1].shape, f"{tuple(pair[0].shape)} and {tuple(pair[1].shape)}")
    dtype = torch.promote_types(torch.promote_types(pair[0].dtype, pair[1].dtype), torch.float32)
    return pair[0].to(dtype), pair[1].to(dtype)


def _check_equal_sizes(equal: bool, sizes: str) -> None:
    """Refuse clouds of different sizes for the EMD (a bijection between their points): `sizes` names what was got."""
    if not equal:
        raise ValueError(
            f"EMD needs clouds of equal size, got {sizes}; sample the same number of points for both sets."
        )


def _as_distances(name: str, distances: torch.Tensor) -> torch.Tensor:
    """Check a non-empty 2-D matrix of finite, non-negative distances."""
    distances = torch.as_tensor(distances)
    if distances.ndim != 2 or 0 in distances.shape:
        raise ValueError(f"{name} must be a non-empty 2-D distance matrix, got shape {tuple(distances.shape)}.")
    distances = distances.double()
    if not torch.isfinite(distances).all():
        raise ValueError(f"{name} contains NaN or infinite distances; recompute it from finite point clouds.")
    if (distances < 0).any():
        raise ValueError(f"{name} contains negative values, which are not distances; check how it was computed.")
    return distances


def _pairwise(
    clouds_a: torch.Tensor,
    clouds_b: torch.Tensor | None,
    distance: Callable[[torch.Tensor, torch.Tensor], torch.Tensor],
    batch_size: int,
    progress: bool,
    device: torch.device | str | None,
    description: str,
) -> torch.Tensor:
    """Apply `distance` (two (B, P, 3) batches -> (B,) distances) to all pairs, `batch_size` pairs at a time."""
    if batch_size < 1:
        raise ValueError(f"batch_size must be at least 1, got {batch_size}.")
    first = _as_clouds("clouds_a", clouds_a)
    second = first if clouds_b is None else _as_clouds("clouds_b", clouds_b)
    dtype = torch.promote_types(first.dtype, second.dtype)
    device = torch.device(device) if device is not None else first.device
    first, second = first.to(device, dtype), second.to(device, dtype)
    if clouds_b is None:
        rows, columns = torch.triu_indices(len(first), len(first), offset=1)
    else:
        rows = torch.arange(len(first)).repeat_interleave(len(second))
        columns = torch.arange(len(second)).repeat(len(first))
    matrix = torch.zeros(len(first), len(second), dtype=dtype)
    with tqdm(total=len(rows), desc=description, disable=not progress) as bar:
        for start in range(0, len(rows), batch_size):
            row, column = rows[start : start + batch_size], columns[start : start + batch_size]
            values = distance(first[row.to(device)], second[column.to(device)]).cpu().to(dtype)
            matrix[row, column] = values
            if clouds_b is None:
                matrix[column, row] = values
            bar.update(len(row))
    return matrix


def _chamfer_batch(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Chamfer distances of B pairs of clouds (B, P, 3) and (B, Q, 3): squared nearest-neighbour means, both ways."""
    squared = torch.cdist(a, b, compute_mode=_DIRECT_DISTANCES).square_()
    return squared.amin(dim=2).mean(dim=1) + squared.amin(dim=1).mean(dim=1)


def _check_sinkhorn_settings(epsilon: float, tolerance: float, max_iterations: int) -> None:
    if not epsilon > 0 or not tolerance > 0 or max_iterations < 1:
        raise ValueError(
            f"Sinkhorn needs epsilon > 0, tolerance > 0 and max_iterations >= 1, got {epsilon}, {tolerance} and "
            f"{max_iterations}; the pinned defaults are {SINKHORN_EPSILON}, {SINKHORN_TOLERANCE} and "
            f"{SINKHORN_MAX_ITERATIONS}."
        )


def _sinkhorn_bounds(
    cost: torch.Tensor, epsilon: float, tolerance: float, max_iterations: int
) -> tuple[torch.Tensor, torch.Tensor]:
    """Lower and upper bounds (B,) on the EMD of each (P, P) Euclidean cost matrix of the batch (B, P, P).

    The algorithm of `earth_movers_distance`. Pairs that converge leave the batch, so a hard pair does not keep the
    easy ones iterating.
    """
    _check_sinkhorn_settings(epsilon, tolerance, max_iterations)
    num_pairs, num_points, _ = cost.shape
    scale = cost.mean(dim=(1, 2)).clamp_min(torch.finfo(cost.dtype).tiny)
    cost = cost / scale[:, None, None]
    f = cost.new_zeros(num_pairs, num_points, 1)
    g = cost.new_zeros(num_pairs, 1, num_points)
    bounds = cost.new_empty(2, num_pairs)
    pending = torch.arange(num_pairs, device=cost.device)
    temperature = _EPSILON_START
    for iteration in range(1, max_iterations + 1):
        f, g = _sinkhorn_iteration(f, g, cost, temperature, _OVER_RELAXATION)
        annealing = temperature > epsilon
        last = iteration == max_iterations
        if last or (not annealing and iteration % _CHECK_EVERY == 0):
            upper = _rounded_plan_cost(f, g, cost, temperature)
            lower = ((cost - g).amin(dim=2).mean(dim=1) + g.mean(dim=(1, 2))).clamp_min_(0.0)  # EMD >= 0 too
            gap = (upper - lower) / upper.clamp_min(_GAP_FLOOR)
            done = gap <= tolerance
            if last and not done.all():
                logger.warning(
                    "Sinkhorn EMD: %d of %d pair(s) still had a relative gap up to %.3g > tolerance %.3g after %d "
                    "iterations; their values are only within half that gap of the EMD",
                    int((~done).sum()),
                    num_pairs,
                    float(gap.max()),
                    tolerance,
                    max_iterations,
                )
                done = torch.ones_like(done)
            bounds[0, pending[done]] = lower[done]
            bounds[1, pending[done]] = upper[done]
            keep = ~done
            pending, cost, f, g = pending[keep], cost[keep], f[keep], g[keep]
            if len(pending) == 0:
                break
        if annealing and iteration % _ITERATIONS_PER_EPSILON == 0:
            temperature = max(temperature * _EPSILON_DECAY, epsilon)
    return bounds[0] * scale, bounds[1] * scale


def _sinkhorn_iteration(
    f: torch.Tensor, g: torch.Tensor, cost: torch.Tensor, temperature: float, relaxation: float
) -> tuple[torch.Tensor, torch.Tensor]:
    """One log-domain Sinkhorn iteration on uniform marginals, over-relaxed by `relaxation` (1: plain): the row
    potentials f (B, P, 1), then the column potentials g (B, 1, P), of the costs (B, P, P) at `temperature`."""
    log_weight = -math.log(cost.shape[-1])
    f = f.lerp(temperature * (log_weight - _logsumexp((g - cost).div_(temperature), dim=2)), relaxation)
    g = g.lerp(temperature * (log_weight - _logsumexp((f - cost).div_(temperature), dim=1)), relaxation)
    return f, g


def _logsumexp(values: torch.Tensor, dim: int) -> torch.Tensor:
    """Log-sum-exp over `dim` (kept), computed in place in `values` (a temporary) and floored against denormals."""
    top = values.amax(dim=dim, keepdim=True)
    return values.sub_(top).clamp_(min=_EXPONENT_FLOOR).exp_().sum(dim=dim, keepdim=True).log_().add_(top)


def _rounded_plan_cost(f: torch.Tensor, g: torch.Tensor, cost: torch.Tensor, temperature: float) -> torch.Tensor:
    """Cost of the Sinkhorn plan exp((f + g - cost) / temperature) rounded onto uniform marginals (Altschuler 2017).

    Rows and then columns with too much mass are scaled down; the missing mass is added back as the outer product of
    the row and column deficits, so the result is a feasible plan and its cost an upper bound on the EMD.
    """
    target = 1.0 / cost.shape[-1]
    plan = (f + g).sub_(cost).div_(temperature).clamp_(min=_EXPONENT_FLOOR).exp_()
    plan.mul_((target / plan.sum(dim=2, keepdim=True)).clamp_(max=1.0))
    plan.mul_((target / plan.sum(dim=1, keepdim=True)).clamp_(max=1.0))
    row_deficit = target - plan.sum(dim=2, keepdim=True)
    column_deficit = target - plan.sum(dim=1, keepdim=True)
    missing = row_deficit.sum(dim=1, keepdim=True).clamp_min(torch.finfo(cost.dtype).tiny)
    plan.addcmul_(row_deficit, column_deficit / missing)
    return plan.mul_(cost).sum(dim=(1, 2))
