"""The memorisation check: hand-computed distance matrices, copies among fresh samples, clear refusals."""

from __future__ import annotations

import pytest
import torch

from hf_wlora.metrics import (
    copy_fraction,
    copy_mask,
    generation_metrics_from_distances,
    image_copies,
    image_memorization,
)


def test_copy_fraction_on_a_hand_computed_example() -> None:
    # training instances' nearest other instance: t0 -> t1 at 2, t1 -> t0 at 2, t2 -> t1 at 4
    training = torch.tensor([[0.0, 2.0, 5.0], [2.0, 0.0, 4.0], [5.0, 4.0, 0.0]])
    # s0: nearest t0 at 0.5 < 0.5 * 2 -> copy; s1: nearest t2 at 2.5 > 0.5 * 4 -> not; s2: nearest t1 at 0.99 -> copy
    samples = torch.tensor([[0.5, 1.8, 5.0], [3.0, 3.0, 2.5], [1.5, 0.99, 4.0]])
    assert copy_fraction(samples, training) == pytest.approx(2 / 3)
    assert copy_fraction(samples, training, ratio=0.25) == 0.0  # s0: 0.5 < 0.25 * 2 fails
    assert copy_fraction(samples, training, ratio=0.3) == pytest.approx(1 / 3)  # s0: 0.5 < 0.6; s2: 0.99 > 0.6
    assert copy_fraction(samples, training, ratio=2.0) == 1.0
    assert copy_mask(samples, training).tolist() == [True, False, True]


def test_images_with_copies_among_fresh_draws() -> None:
    generator = torch.Generator().manual_seed(0)
    training = torch.rand(20, 8, 8, 3, generator=generator)
    copies = (training[:5] + 0.01 * torch.randn(5, 8, 8, 3, generator=generator)).clamp(0, 1)
    fresh = torch.rand(15, 8, 8, 3, generator=generator)
    figures = image_memorization(torch.cat([copies, fresh]), training)
    assert figures["copy_fraction"] == pytest.approx(5 / 20)
    assert figures["distinct_nearest_training_instances"] <= 20
    assert image_memorization(training, training)["copy_fraction"] == 1.0
    assert image_memorization(training, training)["nearest_training_psnr_mean"] == pytest.approx(100.0)  # clamped
    assert image_memorization(fresh, training)["copy_fraction"] == 0.0
    copied = image_memorization(copies, training)["nearest_training_psnr_mean"]
    assert copied == pytest.approx(40.0, abs=1.0)  # noise of std 0.01 -> MSE about 1e-4
    assert image_copies(torch.cat([copies, fresh]), training).tolist() == [True] * 5 + [False] * 15


def test_generation_metrics_report_the_copies_too() -> None:
    within = torch.tensor([[0.0, 2.0, 5.0], [2.0, 0.0, 4.0], [5.0, 4.0, 0.0]])
    metrics = generation_metrics_from_distances(within, within, within)  # the references themselves as samples
    assert metrics["copy_fraction"] == 1.0


def test_bad_distances_are_refused() -> None:
    with pytest.raises(ValueError, match=r"sample_to_training must be \(S, T\)"):
        copy_fraction(torch.zeros(2, 3), torch.zeros(2, 2))
    with pytest.raises(ValueError, match="at least one sample and two training instances"):
        copy_fraction(torch.zeros(2, 1), torch.zeros(1, 1))
    with pytest.raises(ValueError, match="NaN or infinite"):
        copy_fraction(torch.full((2, 2), float("nan")), torch.zeros(2, 2))
    with pytest.raises(ValueError, match="ratio must be a positive number"):
        copy_fraction(torch.ones(2, 2), torch.ones(2, 2), ratio=0)
    with pytest.raises(ValueError, match="differ in size"):
        image_memorization(torch.rand(2, 8, 8, 3), torch.rand(2, 4, 4, 3))
    with pytest.raises(ValueError, match=r"training must be on \[0, 1\]"):  # pixel distances on another scale
        image_memorization(torch.rand(2, 8, 8, 3), 255 * torch.rand(2, 8, 8, 3))
