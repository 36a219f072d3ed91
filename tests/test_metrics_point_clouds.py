"""3-D generation metrics: sampling, normalisation, Chamfer and EMD matrices, MMD / COV / 1-NNA (known answers)."""

from __future__ import annotations

import itertools
import logging
import math
import re

import numpy as np
import pytest
import torch
import trimesh

from hf_wlora.metrics import point_clouds
from hf_wlora.metrics.memorization import copy_fraction
from hf_wlora.metrics.point_clouds import (
    EMD_BOUND_SLACK,
    SINKHORN_TOLERANCE,
    _exact_emd_pairs,
    _reduction_bounds,
    _sinkhorn_dual_bounds,
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
from hf_wlora.metrics.reconstruction import chamfer_distance

# Sinkhorn's answer is the midpoint of a certified bracket [dual bound, rounded plan's cost] at most SINKHORN_TOLERANCE
# (1%) of the plan's cost wide, so it is within half that (0.5%) of the exact EMD; 1e-4 more allows for float32.
EMD_RELATIVE_TOLERANCE = SINKHORN_TOLERANCE / 2 + 1e-4


def two_squares() -> trimesh.Trimesh:
    """A 2 x 2 square at z = 0 (area 4) and a 1 x 1 square at z = 5 (area 1): 80% of the area is the big one."""
    vertices = [[0, 0, 0], [2, 0, 0], [2, 2, 0], [0, 2, 0], [0, 0, 5], [1, 0, 5], [1, 1, 5], [0, 1, 5]]
    faces = [[0, 1, 2], [0, 2, 3], [4, 5, 6], [4, 6, 7]]
    return trimesh.Trimesh(vertices=np.array(vertices, dtype=float), faces=np.array(faces), process=False)


def shape_cloud(kind: str, num_points: int, seed: int) -> torch.Tensor:
    """A normalised surface sample of a simple shape: two calls with different seeds are two samplings of it."""
    meshes = {
        "box": trimesh.creation.box((1.0, 0.5, 0.3)),
        "sphere": trimesh.creation.icosphere(3),
        "capsule": trimesh.creation.capsule(1.0, 0.3),
        "torus": trimesh.creation.torus(1.0, 0.3),
    }
    return normalize_point_clouds(sample_point_clouds([meshes[kind]], num_points, seed=seed))[0]


# --- sampling ---------------------------------------------------------------------------------------------------------


def test_sampling_is_area_weighted_on_the_surface_and_deterministic() -> None:
    clouds = sample_point_clouds([two_squares()], num_points=5000, seed=3)
    assert clouds.shape == (1, 5000, 3) and clouds.dtype == torch.float32
    points = clouds[0]
    on_big = points[:, 2] == 0
    on_small = points[:, 2] == 5
    assert bool((on_big | on_small).all())  # every point lies on one of the squares
    assert bool((points[on_big, :2] >= 0).all() and (points[on_big, :2] <= 2).all())
    assert bool((points[on_small, :2] >= 0).all() and (points[on_small, :2] <= 1).all())
    # 4/5 of the area -> 80% of the points; the binomial std is sqrt(0.8 * 0.2 / 5000) = 0.0057, allow ~5 of them
    assert float(on_big.double().mean()) == pytest.approx(0.8, abs=0.03)
    assert torch.equal(sample_point_clouds([two_squares()], num_points=5000, seed=3), clouds)


def test_each_mesh_gets_seed_plus_its_index() -> None:
    mesh = two_squares()
    first = sample_point_clouds([mesh, mesh], num_points=64, seed=0)
    shifted = sample_point_clouds([mesh, mesh], num_points=64, seed=1)
    assert not torch.equal(first[0], first[1])  # the same mesh twice gives two different samplings
    assert torch.equal(shifted[0], first[1])  # mesh i uses seed + i


def test_sampling_rejects_missing_and_empty_meshes() -> None:
    flat = trimesh.Trimesh(vertices=[[0, 0, 0], [1, 0, 0], [2, 0, 0]], faces=[[0, 1, 2]], process=False)
    with pytest.raises(ValueError, match=r"meshes\[1\] is None"):
        sample_point_clouds([two_squares(), None])
    with pytest.raises(ValueError, match=r"meshes\[0\] has no surface area"):
        sample_point_clouds([flat])
    with pytest.raises(ValueError, match=r"meshes\[0\] is a Scene"):
        sample_point_clouds([trimesh.Scene(two_squares())])
    with pytest.raises(ValueError, match="meshes is empty"):
        sample_point_clouds([])
    with pytest.raises(ValueError, match="num_points"):
        sample_point_clouds([two_squares()], num_points=0)


# --- normalisation ----------------------------------------------------------------------------------------------------


def test_normalisation_divides_the_centred_cloud_by_one_scalar_std() -> None:
    # [[0,0,0],[2,0,0]]: mean (1,0,0); centred coordinates -1,0,0,1,0,0 have std sqrt(2/5) (correction 1)
    cloud = torch.tensor([[[0.0, 0.0, 0.0], [2.0, 0.0, 0.0]]])
    expected = torch.tensor([[[-1.0, 0.0, 0.0], [1.0, 0.0, 0.0]]]) / math.sqrt(2 / 5)
    torch.testing.assert_close(normalize_point_clouds(cloud), expected)

    clouds = torch.randn(4, 300, 3) * torch.tensor([3.0, 1.0, 0.2]) + torch.tensor([5.0, -2.0, 7.0])
    normalised = normalize_point_clouds(clouds)
    torch.testing.assert_close(normalised.mean(dim=1), torch.zeros(4, 3), atol=1e-5, rtol=0)
    torch.testing.assert_close(normalised.flatten(1).std(dim=1), torch.ones(4))
    # one scalar per cloud: the aspect ratio survives (x keeps 15 times the spread of z)
    spread = normalised.std(dim=1)
    assert float((spread[:, 0] / spread[:, 2]).mean()) == pytest.approx(15.0, rel=0.1)
    # translation- and scale-invariant
    torch.testing.assert_close(normalize_point_clouds(2.5 * clouds - 4.0), normalised, atol=1e-5, rtol=1e-5)


def test_normalisation_rejects_degenerate_and_non_finite_clouds() -> None:
    clouds = torch.randn(3, 10, 3)
    clouds[2] = 1.0
    with pytest.raises(ValueError, match=r"clouds\[2\] has all its points at one location"):
        normalize_point_clouds(clouds)
    clouds[1, 4, 0] = float("nan")
    with pytest.raises(ValueError, match=r"clouds\[1\] contains NaN"):
        normalize_point_clouds(clouds)
    with pytest.raises(ValueError, match=r"\(N, P, 3\)"):
        normalize_point_clouds(torch.randn(10, 3))
    with pytest.raises(ValueError, match="at least 2 points"):
        normalize_point_clouds(torch.randn(2, 1, 3))


# --- Chamfer ----------------------------------------------------------------------------------------------------------


def test_pairwise_chamfer_has_a_hand_computed_value() -> None:
    # a -> b: the one point's nearest is at squared distance 1; b -> a: squared distances 1 and 4, mean 2.5
    a = torch.tensor([[[0.0, 0.0, 0.0]]])
    b = torch.tensor([[[1.0, 0.0, 0.0], [0.0, 2.0, 0.0]]])
    assert float(pairwise_chamfer(a, b)[0, 0]) == pytest.approx(3.5)


def test_pairwise_chamfer_is_the_loop_of_chamfer_distance() -> None:
    generator = torch.Generator().manual_seed(0)
    clouds_a = torch.randn(3, 50, 3, generator=generator)
    clouds_b = torch.randn(4, 70, 3, generator=generator) + 0.5
    matrix = pairwise_chamfer(clouds_a, clouds_b, batch_size=5)
    expected = torch.tensor([[chamfer_distance(a, b) for b in clouds_b] for a in clouds_a])
    assert matrix.shape == (3, 4)
    torch.testing.assert_close(matrix.double(), expected.double(), rtol=1e-5, atol=0)
    torch.testing.assert_close(pairwise_chamfer(clouds_a, clouds_b, batch_size=1), matrix, rtol=1e-6, atol=0)
    # against itself: symmetric, zero diagonal, the same values as the full computation
    itself = pairwise_chamfer(clouds_a)
    assert torch.equal(itself.diagonal(), torch.zeros(3)) and torch.equal(itself, itself.T)
    torch.testing.assert_close(itself, pairwise_chamfer(clouds_a, clouds_a.clone()), rtol=1e-6, atol=1e-7)
    assert float(pairwise_chamfer(clouds_a[:1], clouds_a[:1].clone())[0, 0]) == 0.0


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_the_kdtree_and_cdist_methods_give_the_same_matrices(dtype: torch.dtype) -> None:
    generator = torch.Generator().manual_seed(1)
    clouds_a = torch.randn(4, 300, 3, generator=generator, dtype=dtype)
    clouds_b = torch.randn(5, 200, 3, generator=generator, dtype=dtype) * 1.2
    near = clouds_a + 1e-4 * torch.randn(clouds_a.shape, generator=generator, dtype=dtype)  # tiny distances too
    for first, second in ((clouds_a, clouds_b), (clouds_a, near), (clouds_a, None)):
        tree = pairwise_chamfer(first, second, method="kdtree")
        full = pairwise_chamfer(first, second, method="cdist", batch_size=3)
        assert tree.dtype == full.dtype == dtype and tree.shape == full.shape
        torch.testing.assert_close(tree, full, rtol=1e-5 if dtype == torch.float32 else 1e-12, atol=0)
    assert torch.equal(pairwise_chamfer(clouds_a), pairwise_chamfer(clouds_a, method="kdtree"))  # the CPU default
    with pytest.raises(ValueError, match="method must be 'kdtree', 'cdist' or None"):
        pairwise_chamfer(clouds_a, method="brute")


def test_pairwise_chamfer_rejects_bad_clouds() -> None:
    with pytest.raises(ValueError, match=r"clouds_b must be a non-empty \(N, P, 3\)"):
        pairwise_chamfer(torch.randn(2, 5, 3), torch.randn(2, 5, 2))
    bad = torch.randn(2, 5, 3)
    bad[1, 0, 2] = float("inf")
    with pytest.raises(ValueError, match=r"clouds_a\[1\] contains NaN or infinite"):
        pairwise_chamfer(bad, torch.randn(2, 5, 3))
    with pytest.raises(ValueError, match="batch_size"):
        pairwise_chamfer(torch.randn(2, 5, 3), batch_size=0)


# --- earth mover's distance -------------------------------------------------------------------------------------------


def test_exact_emd_has_hand_computed_values() -> None:
    # matching each point to the one straight above it (distance 1) beats the crossed matching (sqrt 2 each)
    a = torch.tensor([[0.0, 0.0, 0.0], [1.0, 0.0, 0.0]])
    b = torch.tensor([[1.0, 0.0, 1.0], [0.0, 0.0, 1.0]])
    assert exact_emd(a, b) == pytest.approx(1.0)
    # a translated cloud is at the translation's length: no bijection beats moving every point by t
    cloud = torch.randn(40, 3, generator=torch.Generator().manual_seed(1))
    assert exact_emd(cloud, cloud + torch.tensor([0.3, -0.4, 1.2])) == pytest.approx(1.3, rel=1e-6)
    assert exact_emd(cloud, cloud[torch.randperm(40)]) == 0.0


def emd_cases() -> list[tuple[str, torch.Tensor, torch.Tensor]]:
    generator = torch.Generator().manual_seed(0)
    cases = []
    for n in (64, 128):
        gaussian = torch.randn(n, 3, generator=generator)
        cases += [
            (f"gaussians-{n}", gaussian, 0.8 * torch.randn(n, 3, generator=generator) + 0.3),
            (f"uniform-{n}", torch.rand(n, 3, generator=generator), torch.rand(n, 3, generator=generator)),
            (f"translated-{n}", gaussian, gaussian + torch.tensor([0.3, -0.2, 0.1])),
            (f"permuted-scaled-{n}", gaussian, 1.5 * gaussian[torch.randperm(n, generator=generator)]),
            (f"box-resampled-{n}", shape_cloud("box", n, 1), shape_cloud("box", n, 2)),
            (f"torus-resampled-{n}", shape_cloud("torus", n, 1), shape_cloud("torus", n, 2)),
            (f"sphere-capsule-{n}", shape_cloud("sphere", n, 1), shape_cloud("capsule", n, 2)),
        ]
    return cases


@pytest.mark.parametrize(("name", "cloud_a", "cloud_b"), [pytest.param(*case, id=case[0]) for case in emd_cases()])
def test_sinkhorn_emd_agrees_with_the_exact_assignment_solver(
    name: str, cloud_a: torch.Tensor, cloud_b: torch.Tensor
) -> None:
    exact = exact_emd(cloud_a, cloud_b)
    approximate = earth_movers_distance(cloud_a, cloud_b)
    assert approximate == pytest.approx(exact, rel=EMD_RELATIVE_TOLERANCE), name
    if name.startswith("translated"):
        assert approximate == pytest.approx(math.sqrt(0.3**2 + 0.2**2 + 0.1**2), rel=EMD_RELATIVE_TOLERANCE)


def test_sinkhorn_emd_of_identical_clouds_is_zero_and_scales_with_the_clouds() -> None:
    cloud = torch.randn(100, 3, generator=torch.Generator().manual_seed(2))
    mean_distance = float(torch.cdist(cloud, cloud).mean())
    # certified: the bracket [0, plan cost] is at most tolerance x 1% of the mean distance wide, the midpoint half that
    assert 0.0 <= earth_movers_distance(cloud, cloud.clone()) <= SINKHORN_TOLERANCE * 1e-2 / 2 * mean_distance
    other = torch.rand(100, 3, generator=torch.Generator().manual_seed(3))
    assert earth_movers_distance(3.0 * cloud, 3.0 * other) == pytest.approx(
        3.0 * earth_movers_distance(cloud, other), rel=1e-4
    )


def test_pairwise_emd_matches_the_single_pair_functions() -> None:
    generator = torch.Generator().manual_seed(4)
    clouds_a = torch.randn(3, 64, 3, generator=generator)
    clouds_b = torch.rand(2, 64, 3, generator=generator)
    exact = pairwise_emd(clouds_a, clouds_b, method="exact")
    expected = torch.tensor([[exact_emd(a, b) for b in clouds_b] for a in clouds_a])
    torch.testing.assert_close(exact.double(), expected.double(), rtol=1e-6, atol=0)
    approximate = pairwise_emd(clouds_a, clouds_b, batch_size=4)
    single = torch.tensor([[earth_movers_distance(a, b) for b in clouds_b] for a in clouds_a])
    torch.testing.assert_close(approximate, single, rtol=1e-4, atol=0)  # batching changes nothing but rounding
    torch.testing.assert_close(approximate, exact, rtol=EMD_RELATIVE_TOLERANCE, atol=0)
    itself = pairwise_emd(clouds_a)
    assert torch.equal(itself, itself.T) and torch.equal(itself.diagonal(), torch.zeros(3))
    torch.testing.assert_close(itself, pairwise_emd(clouds_a, method="exact"), rtol=EMD_RELATIVE_TOLERANCE, atol=0)


def test_exact_emd_on_several_threads_equals_one_pair_at_a_time() -> None:
    generator = torch.Generator().manual_seed(6)
    clouds_a, clouds_b = torch.randn(3, 40, 3, generator=generator), torch.rand(4, 40, 3, generator=generator)
    threads = torch.get_num_threads()
    try:
        torch.set_num_threads(1)
        serial = pairwise_emd(clouds_a, clouds_b, method="exact")
        torch.set_num_threads(3)
        assert torch.equal(pairwise_emd(clouds_a, clouds_b, method="exact", batch_size=5), serial)
    finally:
        torch.set_num_threads(threads)


def test_emd_lower_bounds_have_a_hand_computed_value_and_stay_below_the_emd() -> None:
    # a = {0, 0.1}, b = {0, 5} on the x axis: the EMD matches 0-0 and 0.1-5, (0 + 4.9) / 2; a's points are 0 and 0.1
    # from b, b's 0 and 4.9 from a: the larger mean, 2.45, is the bound (tight here)
    a = torch.tensor([[[0.0, 0.0, 0.0], [0.1, 0.0, 0.0]]], dtype=torch.float64)
    b = torch.tensor([[[0.0, 0.0, 0.0], [5.0, 0.0, 0.0]]], dtype=torch.float64)
    assert exact_emd(a[0], b[0]) == pytest.approx(2.45, abs=1e-12)
    assert float(emd_lower_bounds(a, b)) == pytest.approx(2.45 * (1 - EMD_BOUND_SLACK), abs=1e-12)
    generator = torch.Generator().manual_seed(8)
    clouds_a, clouds_b = torch.randn(4, 48, 3, generator=generator), torch.rand(3, 48, 3, generator=generator) * 2
    bounds = emd_lower_bounds(clouds_a, clouds_b)
    for i, j in itertools.product(range(4), range(3)):
        exact = exact_emd(clouds_a[i], clouds_b[j])
        distances = torch.cdist(clouds_a[i].double(), clouds_b[j].double())
        # the reduction bound (a dual point of the assignment) is tighter than the k-d tree bound, and both below
        assert bounds[i, j] <= _reduction_bounds(distances[None]) <= exact
        assert bounds[i, j] > 0.5 * exact
    itself = emd_lower_bounds(clouds_a)
    assert torch.equal(itself, itself.T) and torch.equal(itself.diagonal(), torch.zeros(4, dtype=torch.float64))


def test_the_sinkhorn_dual_bound_is_a_tighter_valid_bound_that_spares_the_assignment() -> None:
    generator = torch.Generator().manual_seed(8)
    a, b = torch.randn(6, 48, 3, generator=generator), torch.rand(6, 48, 3, generator=generator) * 2
    distances = torch.cdist(a.double(), b.double(), compute_mode="donot_use_mm_for_euclid_dist")
    exact = torch.tensor([exact_emd(x, y) for x, y in zip(a, b, strict=True)], dtype=torch.float64)
    reduction, sinkhorn = _reduction_bounds(distances), _sinkhorn_dual_bounds(distances)
    # both are feasible points of the assignment's dual, so at most the EMD; five Sinkhorn iterations land within 2%
    # of it here, where the reduction bound is 15-28% below
    assert torch.all(reduction < sinkhorn) and torch.all(sinkhorn <= exact)
    assert torch.all(sinkhorn >= 0.98 * exact) and torch.all(reduction <= 0.86 * exact)
    itself = torch.cdist(a[:1].double(), a[:1].double(), compute_mode="donot_use_mm_for_euclid_dist")
    assert float(_sinkhorn_dual_bounds(itself)) == pytest.approx(0.0, abs=1e-12)  # identical clouds: EMD 0
    # limits between the two bounds: only the Sinkhorn bound proves the pairs above them, so none is solved and each
    # gets that bound, lowered by the slack, except a pair whose limit is infinite (nothing to prove); at limits equal
    # to the EMD every pair is solved, to its exact value
    limits = (reduction + sinkhorn) / 2
    limits[0] = math.inf
    values, solved = _exact_emd_pairs(a, b, limits)
    assert solved == 1 and values[0] == exact[0]
    assert torch.equal(values[1:], sinkhorn[1:] * (1 - EMD_BOUND_SLACK))
    values, solved = _exact_emd_pairs(a, b, exact)
    assert solved == 6 and torch.equal(values, exact)


@pytest.mark.parametrize("threads", [1, 2])
def test_pruned_exact_emd_metrics_equal_those_of_the_full_matrices(
    threads: int, caplog: pytest.LogCaptureFixture
) -> None:
    kinds = ("sphere", "box", "capsule", "torus")
    references = torch.stack([shape_cloud(kind, 64, seed) for kind in kinds for seed in range(3)])
    samples = torch.stack(
        [
            references[0],  # a copy of a reference (EMD 0 after normalisation) ...
            references[0],  # ... twice: a tie at 0 with the reference, which goes to the sample
            references[4] * 1.5,
            *[shape_cloud(kind, 64, seed) for kind in ("sphere", "torus") for seed in range(10, 13)],
            *[shape_cloud("box", 64, 20) + 0.2 * torch.randn(64, 3, generator=torch.Generator().manual_seed(3))],
        ]
    )
    own = point_cloud_distances(references, distance="emd_exact")
    previous = torch.get_num_threads()
    try:
        torch.set_num_threads(threads)
        with caplog.at_level(logging.INFO, logger="hf_wlora.metrics.point_clouds"):
            pruned = point_cloud_generation_metrics(samples, references, "emd_exact", reference_distances=own)
    finally:
        torch.set_num_threads(previous)
    solved, total = map(int, re.search(r"exact EMD: (\d+) of (\d+) pairs solved", caplog.text).groups())
    assert total == 10 * 12 + 10 * 9 // 2 and solved < total / 2, caplog.text
    full = point_cloud_generation_metrics(samples, references, "emd_exact", reference_distances=own, prune=False)
    assert pruned == full
    # the references' own matrix, searched too: each row's minimum exact, the same metrics
    nearest = point_cloud_distances(references, distance="emd_exact", nearest_only=True)
    diagonal = torch.eye(len(references), dtype=torch.bool)
    for found in (lambda matrix: matrix.min(dim=1).values, lambda matrix: matrix.argmin(dim=1)):
        assert torch.equal(found(nearest.masked_fill(diagonal, math.inf)), found(own.masked_fill(diagonal, math.inf)))
    assert point_cloud_generation_metrics(samples, references, "emd_exact", reference_distances=nearest) == full
    assert point_cloud_generation_metrics(samples, references, "emd_exact") == full  # computes its own, searched
    with pytest.raises(ValueError, match="nearest_only applies to a set's own exact EMD matrix"):
        point_cloud_distances(references, distance="chamfer", nearest_only=True)
    assert full["copy_fraction"] > 0 and full["mmd"] > 0
    with pytest.raises(ValueError, match="EMD needs clouds of equal size, got 32 points per sample and 64"):
        point_cloud_generation_metrics(samples[:, :32], references, "emd_exact", reference_distances=own)


def test_a_pair_at_emd_zero_is_solved_not_bounded_above_a_limit_of_zero() -> None:
    """Clouds that are one another's permutation have EMD 0, but the Sinkhorn dual bound's float64 rounding can put it
    at +1e-19 (seeds 3 to 5 here): against a limit of 0 the pair must still be solved, or a tie at 0 is lost."""
    for seed in range(3, 6):
        generator = torch.Generator().manual_seed(seed)
        cloud = torch.randn(64, 3, generator=generator)
        permuted = cloud[torch.randperm(64, generator=generator)]
        values, solved = _exact_emd_pairs(permuted[None], cloud[None], torch.zeros(1))
        assert solved == 1 and values.tolist() == [0.0]


def test_pruned_metrics_keep_the_tie_of_a_permuted_copy() -> None:
    """A sample copying a reference and another copying it with its points in another order (unnormalised, so both
    are exact copies): their pair has limit 0, and the full matrices' tie at 0 goes to the other sample (1-NNA)."""
    generator = torch.Generator().manual_seed(5)
    references = torch.randn(5, 64, 3, generator=generator)
    permuted = references[0][torch.randperm(64, generator=generator)]
    samples = torch.stack([references[0], permuted, *torch.randn(4, 64, 3, generator=generator)])
    full = point_cloud_generation_metrics(samples, references, "emd_exact", normalize=False, prune=False)
    assert point_cloud_generation_metrics(samples, references, "emd_exact", normalize=False) == full


def test_the_metrics_take_clouds_that_carry_gradients_and_return_plain_numbers() -> None:
    """Evaluations of a generator's output: no graph is built (the Sinkhorn solver would keep one per iteration) and
    the exact solver does not fail on a tensor that requires grad."""
    generator = torch.Generator().manual_seed(0)
    a, b = torch.randn(2, 32, 3, generator=generator).requires_grad_(True).unbind()
    assert exact_emd(a, b) == exact_emd(a.detach(), b.detach())
    assert earth_movers_distance(a, b) == earth_movers_distance(a.detach(), b.detach())
    clouds = torch.stack([a, b])
    for method in ("exact", "sinkhorn"):
        matrix = pairwise_emd(clouds, method=method)
        assert not matrix.requires_grad and torch.equal(matrix, pairwise_emd(clouds.detach(), method=method))
    metrics = point_cloud_generation_metrics(clouds, clouds.detach() + 0.1, "emd_exact")
    assert metrics == point_cloud_generation_metrics(clouds.detach(), clouds.detach() + 0.1, "emd_exact")
    assert normalize_point_clouds(clouds).requires_grad  # a normalisation stays differentiable


def test_sinkhorn_out_of_iterations_warns_with_the_bracket_width(caplog: pytest.LogCaptureFixture) -> None:
    generator = torch.Generator().manual_seed(5)
    a, b = torch.randn(64, 3, generator=generator), torch.rand(64, 3, generator=generator)
    with caplog.at_level(logging.WARNING, logger="hf_wlora.metrics.point_clouds"):
        value = earth_movers_distance(a, b, max_iterations=15)
    (record,) = caplog.records
    assert "still had a relative gap" in record.getMessage()
    gap = record.args[2]  # (upper - lower) / upper, with value = (upper + lower) / 2
    assert gap > SINKHORN_TOLERANCE
    assert abs(value - exact_emd(a, b)) <= gap / (2 - gap) * value


def test_emd_rejects_bad_input() -> None:
    with pytest.raises(ValueError, match="equal size"):
        exact_emd(torch.randn(5, 3), torch.randn(6, 3))
    with pytest.raises(ValueError, match="equal size"):
        pairwise_emd(torch.randn(2, 5, 3), torch.randn(2, 6, 3))
    with pytest.raises(ValueError, match=r"cloud_a must be a non-empty \(P, 3\)"):
        earth_movers_distance(torch.randn(2, 5, 3), torch.randn(5, 3))
    with pytest.raises(ValueError, match="cloud_b contains NaN"):
        earth_movers_distance(torch.randn(5, 3), torch.full((5, 3), float("nan")))
    with pytest.raises(ValueError, match="method must be"):
        pairwise_emd(torch.randn(2, 5, 3), method="auction")
    with pytest.raises(ValueError, match="epsilon > 0"):
        earth_movers_distance(torch.randn(5, 3), torch.randn(5, 3), epsilon=0.0)
    with pytest.raises(ValueError, match="EMD needs clouds of equal size, got 5 and 6 points"):
        emd_lower_bounds(torch.randn(2, 5, 3), torch.randn(2, 6, 3))


@pytest.mark.parametrize("distance", ["emd", "emd_exact"])
def test_the_emd_metrics_refuse_unequal_sizes_before_any_work(distance: str, monkeypatch: pytest.MonkeyPatch) -> None:
    def no_work(*args: object, **kwargs: object) -> None:
        raise AssertionError("a distance matrix was computed before the sizes were checked")

    monkeypatch.setattr(point_clouds, "point_cloud_distances", no_work)
    with pytest.raises(
        ValueError, match="EMD needs clouds of equal size, got 32 points per sample and 64 per reference"
    ):
        point_cloud_generation_metrics(torch.randn(3, 32, 3), torch.randn(2, 64, 3), distance)


# --- MMD, COV, 1-NNA --------------------------------------------------------------------------------------------------


def test_generation_metrics_on_a_hand_computed_example() -> None:
    sample_to_reference = torch.tensor([[1.0, 4.0, 6.0], [4.0, 3.0, 7.0], [5.0, 6.0, 9.0]])
    sample_to_sample = torch.tensor([[0.0, 2.0, 10.0], [2.0, 0.0, 0.5], [10.0, 0.5, 0.0]])
    reference_to_reference = torch.tensor([[0.0, 0.7, 9.0], [0.7, 0.0, 8.0], [9.0, 8.0, 0.0]])
    metrics = generation_metrics_from_distances(sample_to_reference, sample_to_sample, reference_to_reference)
    # MMD: column minima 1 (s0), 3 (s1), 6 (s2) -> (1 + 3 + 6) / 3
    assert metrics["mmd"] == pytest.approx(10 / 3)
    # COV: nearest references are r0 (s0), r1 (s1), r0 (s2) -> {r0, r1} of 3
    assert metrics["cov"] == pytest.approx(2 / 3)
    # 1-NNA, nearest other cloud: s0 -> r0 (1, wrong), s1 -> s2 (0.5, right), s2 -> s1 (0.5, right),
    # r0 -> r1 (0.7, right), r1 -> r0 (0.7, right), r2 -> s0 (6, wrong): 4 of 6 right
    assert metrics["1-nna"] == pytest.approx(4 / 6)


def test_generation_metrics_of_a_set_against_itself_and_of_separated_sets() -> None:
    generator = torch.Generator().manual_seed(6)
    points = torch.randn(5, 2, generator=generator)
    distances = torch.cdist(points, points)
    itself = generation_metrics_from_distances(distances, distances, distances)
    # every reference is its own copy's nearest reference at distance 0; every cloud's nearest other cloud is its
    # copy in the other set, so the 1-NN classifier is always wrong
    assert itself == {"mmd": 0.0, "cov": 1.0, "1-nna": 0.0, "copy_fraction": 1.0}  # every sample a copy
    within, across = torch.ones(4, 4).fill_diagonal_(0.0), torch.full((4, 3), 10.0)
    separated = generation_metrics_from_distances(across, within, torch.ones(3, 3).fill_diagonal_(0.0))
    assert separated["1-nna"] == 1.0 and separated["mmd"] == 10.0
    assert separated["cov"] == pytest.approx(1 / 3)  # all ties -> every sample picks reference 0


def test_generation_metrics_reject_bad_matrices() -> None:
    square = torch.zeros(3, 3)
    with pytest.raises(ValueError, match=r"must be \(3, 3\) and \(2, 2\)"):
        generation_metrics_from_distances(torch.zeros(3, 2), square, square)
    with pytest.raises(ValueError, match="sample_to_reference contains NaN"):
        generation_metrics_from_distances(torch.full((3, 3), float("nan")), square, square)
    with pytest.raises(ValueError, match="reference_to_reference contains negative"):
        generation_metrics_from_distances(square, square, -torch.ones(3, 3))
    with pytest.raises(ValueError, match="non-empty 2-D"):
        generation_metrics_from_distances(torch.zeros(0, 3), torch.zeros(0, 0), square)


def test_point_cloud_generation_metrics_end_to_end() -> None:
    spheres = torch.stack([shape_cloud("sphere", 64, seed) for seed in range(3)])
    boxes = torch.stack([shape_cloud("box", 64, seed) for seed in range(4)])
    # copies of the references, moved and rescaled: normalisation undoes that, then they are exact copies
    copies = point_cloud_generation_metrics(3.0 * spheres + 1.0, spheres, distance="chamfer")
    assert copies["mmd"] == pytest.approx(0.0, abs=1e-8)
    assert copies["cov"] == 1.0 and copies["1-nna"] == 0.0
    assert copies["num_samples"] == 3 and copies["num_references"] == 3
    # boxes against spheres: every cloud's nearest neighbour is of its own kind
    for distance in ("chamfer", "emd", "emd_exact"):
        separated = point_cloud_generation_metrics(boxes, spheres, distance=distance)
        assert separated["1-nna"] == 1.0, distance
        assert separated["num_samples"] == 4 and separated["num_references"] == 3
    expected = generation_metrics_from_distances(
        pairwise_chamfer(boxes, spheres), pairwise_chamfer(boxes), pairwise_chamfer(spheres)
    )
    assert point_cloud_generation_metrics(boxes, spheres, normalize=False) == {
        **expected,
        "num_samples": 4,
        "num_references": 3,
    }
    emd = point_cloud_generation_metrics(boxes, spheres, distance="emd")
    emd_exact = point_cloud_generation_metrics(boxes, spheres, distance="emd_exact")
    assert emd["mmd"] == pytest.approx(emd_exact["mmd"], rel=EMD_RELATIVE_TOLERANCE)
    with pytest.raises(ValueError, match="distance must be one of"):
        point_cloud_generation_metrics(boxes, spheres, distance="hausdorff")


def test_the_references_matrix_can_be_computed_once_for_several_generators() -> None:
    spheres = torch.stack([shape_cloud("sphere", 64, seed) for seed in range(3)])
    boxes = torch.stack([shape_cloud("box", 64, seed) for seed in range(4)])
    for distance in ("chamfer", "emd_exact"):
        own = point_cloud_distances(spheres, distance=distance)
        assert own.shape == (3, 3) and torch.equal(own, own.T)
        given = point_cloud_generation_metrics(boxes, spheres, distance=distance, reference_distances=own)
        assert given == point_cloud_generation_metrics(boxes, spheres, distance=distance)
    with pytest.raises(ValueError, match=r"reference_distances has shape \(4, 4\), but there are 3 references"):
        point_cloud_generation_metrics(boxes, spheres, reference_distances=torch.zeros(4, 4))


def test_chamfer_copies_are_judged_on_distances_not_their_squares() -> None:
    """A copy is at least twice as close to a reference as that reference's nearest other one. Chamfer is a mean of
    squared point distances, so on Chamfer the rule is a quarter: exactly the distance rule on root-Chamfer. EMD is
    a distance, and keeps the half."""
    generator = torch.Generator().manual_seed(3)
    references = torch.randn(3, 256, 3, generator=generator)
    noise = torch.randn(8, 256, 3, generator=generator)
    # samples on the way from reference 0 to noise: close ones are copies, far ones are not
    samples = torch.stack([references[0] + t * noise[i] for i, t in enumerate(torch.linspace(0.05, 1.2, 8))])
    cross = point_cloud_distances(normalize_point_clouds(samples), normalize_point_clouds(references), normalize=False)
    own = point_cloud_distances(normalize_point_clouds(references), normalize=False)
    chamfer = point_cloud_generation_metrics(samples, references, distance="chamfer")
    by_distance = copy_fraction(cross.sqrt(), own.sqrt(), 0.5)
    assert chamfer["copy_fraction"] == by_distance
    assert 0 < by_distance < copy_fraction(cross, own, 0.5)  # the half on squares would count more samples as copies
    emd = point_cloud_generation_metrics(samples, references, distance="emd_exact")
    emd_cross = point_cloud_distances(samples, references, distance="emd_exact")
    emd_own = point_cloud_distances(references, distance="emd_exact")
    assert emd["copy_fraction"] == copy_fraction(emd_cross, emd_own, 0.5)
