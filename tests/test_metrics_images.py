"""Image metrics against known answers: SSIM (vs scikit-image), image features, Fréchet distance and unbiased MMD."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
import torch
from skimage.metrics import structural_similarity

from hf_wlora.metrics.distributions import frechet_distance, image_generation_metrics, mmd
from hf_wlora.metrics.features import PixelFeatures, TransformersImageFeatures, image_features
from hf_wlora.metrics.images import ssim
from hf_wlora.metrics.reconstruction import psnr


def structured_images(n: int, height: int, width: int, channels: int) -> np.ndarray:
    """Smooth gradients and stripes of different frequency per image and channel, on [0, 1]."""
    rows, cols = np.meshgrid(np.linspace(0, 1, height), np.linspace(0, 1, width), indexing="ij")
    images = [
        [0.5 + 0.5 * np.sin(2 * np.pi * ((k + 1) * rows + (c + 1) * cols * cols)) for c in range(channels)]
        for k in range(n)
    ]
    return np.stack(images).transpose(0, 2, 3, 1)


def skimage_ssim(prediction: np.ndarray, target: np.ndarray, data_range: float = 1.0) -> np.ndarray:
    return np.array(
        [
            structural_similarity(
                p,
                t,
                gaussian_weights=True,
                sigma=1.5,
                use_sample_covariance=False,
                data_range=data_range,
                channel_axis=-1,
            )
            for p, t in zip(prediction, target, strict=True)
        ]
    )


# --- SSIM -----------------------------------------------------------------------------------------------------------


def test_ssim_of_an_image_with_itself_is_one() -> None:
    images = torch.rand(3, 16, 20, 3, generator=torch.Generator().manual_seed(0))
    assert torch.allclose(ssim(images, images), torch.ones(3), atol=1e-6)


@pytest.mark.parametrize("shape", [(2, 11, 11, 1), (3, 17, 23, 3), (2, 32, 32, 3), (1, 40, 13, 1)])
@pytest.mark.parametrize("kind", ["random", "structured"])
def test_ssim_matches_scikit_image(shape: tuple[int, int, int, int], kind: str) -> None:
    rng = np.random.default_rng(sum(shape))
    target = rng.random(shape) if kind == "random" else structured_images(*shape)
    prediction = np.clip(target + 0.15 * rng.standard_normal(shape), 0.0, 1.0)
    expected = skimage_ssim(prediction, target)
    assert expected.min() > 0.05 and expected.max() < 0.95  # a non-trivial comparison
    found64 = ssim(torch.from_numpy(prediction), torch.from_numpy(target))
    np.testing.assert_allclose(found64.numpy(), expected, atol=1e-10)
    found32 = ssim(torch.from_numpy(prediction).float(), torch.from_numpy(target).float())
    assert found32.dtype == torch.float32
    np.testing.assert_allclose(found32.numpy(), expected, atol=1e-5)


def test_ssim_uses_the_data_range_and_clamps_the_prediction_like_psnr() -> None:
    rng = np.random.default_rng(1)
    target = 255.0 * structured_images(2, 16, 16, 3)
    prediction = np.clip(target + 30.0 * rng.standard_normal(target.shape), 0.0, 255.0)
    found = ssim(torch.from_numpy(prediction), torch.from_numpy(target), data_range=255.0)
    np.testing.assert_allclose(found.numpy(), skimage_ssim(prediction, target, data_range=255.0), atol=1e-10)
    unit_target = torch.from_numpy(target / 255.0)
    overshoot = unit_target + 0.5  # clamped to 1 wherever it leaves [0, 1]
    assert torch.equal(ssim(overshoot, unit_target), ssim(overshoot.clamp(0.0, 1.0), unit_target))


@pytest.mark.parametrize(
    ("prediction", "target", "message"),
    [
        (torch.rand(2, 16, 16, 3), torch.rand(2, 16, 16, 1), "differ in shape"),
        (torch.rand(2, 3, 16, 16), torch.rand(2, 3, 16, 16), "channels last"),
        (torch.rand(16, 16, 3), torch.rand(16, 16, 3), r"\(N, H, W, C\)"),
        (torch.rand(2, 10, 16, 3), torch.rand(2, 10, 16, 3), "at least 11x11"),
        (torch.full((1, 16, 16, 1), math.nan), torch.rand(1, 16, 16, 1), "prediction contains NaN"),
    ],
)
def test_ssim_rejects_bad_input(prediction: torch.Tensor, target: torch.Tensor, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        ssim(prediction, target)


# --- features -------------------------------------------------------------------------------------------------------


def test_pixel_features_average_areas_and_keep_channels_last() -> None:
    small = torch.rand(2, 8, 8, 3, generator=torch.Generator().manual_seed(0))
    blocks = small.repeat_interleave(4, dim=1).repeat_interleave(4, dim=2)  # each pixel a 4x4 block: 32x32
    assert torch.allclose(PixelFeatures(resolution=8)(blocks), small.flatten(1), atol=1e-6)
    assert torch.equal(PixelFeatures(resolution=8)(small), small.flatten(1))  # same size: just flattened
    colours = torch.tensor([0.1, 0.5, 0.9]).expand(2, 5, 7, 3)  # upsampled (bilinear): constant stays constant
    assert torch.allclose(image_features(colours), torch.tensor([0.1, 0.5, 0.9]).repeat(2, 32 * 32), atol=1e-6)


def test_image_features_check_images_and_the_extractor_output() -> None:
    with pytest.raises(ValueError, match=r"\(N, H, W, 3\)"):
        image_features(torch.rand(2, 3, 16, 16))
    with pytest.raises(ValueError, match="non-empty"):
        image_features(torch.rand(0, 16, 16, 3))
    with pytest.raises(ValueError, match="NaN"):
        image_features(torch.full((1, 8, 8, 3), math.nan))
    # 8-bit or [-1, 1] images would give features on another scale, and FD / MMD with them, without a word
    with pytest.raises(ValueError, match=r"must be floating point on \[0, 1\], got torch.uint8.*float\(\) / 255"):
        image_features(torch.randint(0, 256, (2, 8, 8, 3), dtype=torch.uint8))
    with pytest.raises(ValueError, match=r"must be on \[0, 1\], got values in \[0, 255\]"):
        image_features(torch.linspace(0, 255, 2 * 8 * 8 * 3).reshape(2, 8, 8, 3))
    with pytest.raises(ValueError, match=r"got values in \[-1, 1\]; .* \(x \+ 1\) / 2"):
        image_features(torch.linspace(-1, 1, 2 * 8 * 8 * 3).reshape(2, 8, 8, 3))
    with pytest.raises(ValueError, match=r"must return \(2, D\)"):
        image_features(torch.rand(2, 8, 8, 3), extractor=lambda images: images)
    with pytest.raises(ValueError, match="NaN or infinite features"):
        image_features(torch.rand(2, 8, 8, 3), extractor=lambda images: torch.full((2, 4), math.inf))


def test_transformers_features_are_the_backbone_pooler_output_and_independent_of_batching(tiny_vit: Path) -> None:
    images = torch.randint(0, 256, (5, 32, 32, 3), generator=torch.Generator().manual_seed(0)) / 255.0
    extractor = TransformersImageFeatures(str(tiny_vit), device="cpu", batch_size=2)
    features = extractor(images)
    assert features.shape == (5, 32)
    # the processor only normalises 8-bit 32x32 images: (x - 0.5) / 0.5, channels first
    expected = extractor.model(pixel_values=(images.permute(0, 3, 1, 2) - 0.5) / 0.5).pooler_output
    assert torch.allclose(features, expected.detach(), atol=1e-5)
    unbatched = TransformersImageFeatures(str(tiny_vit), device="cpu", batch_size=64)(images)
    assert torch.allclose(features, unbatched, atol=1e-5)
    resized = extractor(torch.rand(3, 40, 24, 3))  # any image size: the processor resizes to 32x32
    assert resized.shape == (3, 32) and torch.isfinite(resized).all()


def test_transformers_features_refuse_a_model_that_does_not_take_images(tiny_vit: Path, tmp_path: Path) -> None:
    from transformers import BertConfig, BertModel, ViTImageProcessor

    config = BertConfig(vocab_size=10, hidden_size=8, num_hidden_layers=1, num_attention_heads=2, intermediate_size=8)
    BertModel(config).save_pretrained(tmp_path)
    ViTImageProcessor.from_pretrained(tiny_vit).save_pretrained(tmp_path)
    with pytest.raises(ValueError, match="whose input is input_ids, not images"):
        TransformersImageFeatures(str(tmp_path), device="cpu")
    with pytest.raises(ValueError, match=r"Cannot load a vision backbone from .*save_pretrained"):
        TransformersImageFeatures(str(tmp_path / "missing"), device="cpu")


# --- Fréchet distance -----------------------------------------------------------------------------------------------


def test_frechet_distance_of_a_set_with_itself_is_zero() -> None:
    features = torch.randn(50, 6, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    assert abs(frechet_distance(features, features)) < 1e-6
    assert abs(frechet_distance(features[:5], features[:5])) < 1e-6  # fewer vectors than dimensions: singular


def test_frechet_distance_of_a_shifted_set_is_the_squared_shift() -> None:
    features = np.random.default_rng(0).standard_normal((40, 5))
    shift = np.array([1.0, -2.0, 0.5, 0.0, 3.0])  # equal covariances: only the means differ
    assert frechet_distance(features, features + shift) == pytest.approx(float(shift @ shift), rel=1e-10)


def test_frechet_distance_of_gaussian_samples() -> None:
    generator = torch.Generator().manual_seed(0)
    a, b = (torch.randn(20000, 4, generator=generator, dtype=torch.float64) for _ in range(2))
    means = torch.tensor([1.0, 2.0, 0.0, -2.0], dtype=torch.float64)
    assert frechet_distance(a, b + means) == pytest.approx(9.0, abs=0.15)  # ||m1 - m2||² = 9
    assert frechet_distance(a, 2.0 * b) == pytest.approx(4.0, abs=0.15)  # N(0, I) vs N(0, 4I): Tr(I + 4I - 4I) = d


def test_frechet_distance_matches_scipys_matrix_square_root_and_handles_small_sets() -> None:
    from scipy import linalg

    rng = np.random.default_rng(0)
    a, b = rng.standard_normal((60, 5)), rng.standard_normal((40, 5)) @ rng.standard_normal((5, 5)) + 1.0
    cov_a, cov_b = np.cov(a, rowvar=False), np.cov(b, rowvar=False)
    expected = np.sum((a.mean(0) - b.mean(0)) ** 2) + np.trace(cov_a + cov_b - 2 * linalg.sqrtm(cov_a @ cov_b).real)
    assert frechet_distance(a, b) == pytest.approx(expected, rel=1e-9)
    # fewer vectors than dimensions (the sample-space path): a shifted copy still gives exactly ||shift||²
    small = rng.standard_normal((8, 300))
    shift = np.full(300, 0.1)
    assert frechet_distance(small, small + shift) == pytest.approx(float(shift @ shift), rel=1e-9)
    # different sets smaller than their dimension: the sample-space path against the eigenvalues of S_c S_d
    c, d = rng.standard_normal((4, 5)), rng.standard_normal((4, 5)) + 0.3
    cov_c, cov_d = np.cov(c, rowvar=False), np.cov(d, rowvar=False)
    roots = np.sqrt(np.clip(np.linalg.eigvals(cov_c @ cov_d).real, 0, None)).sum()
    expected = np.sum((c.mean(0) - d.mean(0)) ** 2) + np.trace(cov_c) + np.trace(cov_d) - 2 * roots
    assert frechet_distance(c, d) == pytest.approx(expected, rel=1e-8)


# --- MMD ------------------------------------------------------------------------------------------------------------


def test_gaussian_mmd_on_two_plus_two_points_by_hand() -> None:
    a, b = torch.tensor([[0.0], [1.0]]), torch.tensor([[2.0], [4.0]])
    # within a: k(0, 1) = e^-1/2; within b: k(2, 4) = e^-2; across: distances 2, 4, 1, 3 (mean of four kernels)
    cross = (math.exp(-2) + math.exp(-8) + math.exp(-0.5) + math.exp(-4.5)) / 4
    assert mmd(a, b, bandwidth=1.0) == pytest.approx(math.exp(-0.5) + math.exp(-2) - 2 * cross, rel=1e-12)
    # median heuristic: pooled distances 1, 1, 2, 2, 3, 4 have median 2
    assert mmd(a, b) == mmd(a, b, bandwidth=2.0)


def test_linear_kernel_mmd_is_the_unbiased_squared_mean_difference() -> None:
    # <x, y> kernel: the U-statistic equals ||mean_a - mean_b||² - Tr(S_a) / m - Tr(S_b) / n (sample covariances),
    # since the sum over i != j of <a_i, a_j> is ||sum a||² - sum ||a_i||²
    rng = np.random.default_rng(0)
    a, b = rng.standard_normal((7, 3)), rng.standard_normal((4, 3)) + 1.0
    expected = np.sum((a.mean(0) - b.mean(0)) ** 2) - np.trace(np.cov(a.T)) / 7 - np.trace(np.cov(b.T)) / 4
    found = mmd(a, b, kernel="polynomial", degree=1, gamma=1.0, coef0=0.0)
    assert found == pytest.approx(expected, rel=1e-12)


def test_polynomial_mmd_defaults_to_the_kid_kernel() -> None:
    a, b = torch.tensor([[1.0, 0.0], [0.0, 1.0]]), torch.tensor([[1.0, 1.0], [2.0, 0.0]])
    # (<x, y> / 2 + 1)³: within a <a1, a2> = 0 -> 1; within b <b1, b2> = 2 -> 8; across <., .> = 1, 2, 1, 0
    cross = (1.5**3 + 2.0**3 + 1.5**3 + 1.0**3) / 4
    assert mmd(a, b, kernel="polynomial") == pytest.approx(1.0 + 8.0 - 2 * cross, rel=1e-12)


def test_gaussian_mmd_separates_shifted_distributions() -> None:
    generator = torch.Generator().manual_seed(0)
    a, b = (torch.randn(200, 8, generator=generator, dtype=torch.float64) for _ in range(2))
    # over 50 seeds the same-distribution estimate had std 0.0017 (max |.| 0.006) and the shifted one never fell
    # below 0.05
    assert abs(mmd(a, b)) < 0.01
    assert mmd(a, b + 0.5) > 0.03


@pytest.mark.parametrize("distance", [frechet_distance, mmd])
def test_distances_reject_bad_feature_sets(distance) -> None:
    good = torch.randn(4, 3)
    with pytest.raises(ValueError, match="at least 2 feature vectors"):
        distance(good[:1], good)
    with pytest.raises(ValueError, match=r"features_b must be an \(N, D\) set"):
        distance(good, good.flatten())
    with pytest.raises(ValueError, match="3 dimensions and features_b 2"):
        distance(good, good[:, :2])
    with pytest.raises(ValueError, match="features_a contains NaN"):
        distance(torch.full((4, 3), math.nan), good)
    with pytest.raises(ValueError, match="of D >= 1, got shape \\(4, 0\\)"):  # would give 0 or NaN
        distance(good[:, :0], good[:, :0])


def test_psnr_refuses_what_would_give_a_meaningless_number() -> None:
    target = torch.rand(2, 4, 4, 3, generator=torch.Generator().manual_seed(0))
    assert torch.isinf(psnr(target, target)).all()  # a perfect reconstruction
    diverged = target.clone()
    diverged[1, 0, 0, 0] = math.nan  # one instance's fit diverged: its PSNR says so, the other's stands
    assert torch.equal(psnr(diverged, target).isnan(), torch.tensor([False, True]))
    with pytest.raises(ValueError, match=r"target must be on \[0, 1\], got values in"):
        psnr(target, 255 * target)
    assert psnr(255 * target, 255 * target, data_range=255.0).isinf().all()
    assert torch.equal(psnr(target + math.inf, target), psnr(torch.ones_like(target), target))  # clamped


def test_mmd_rejects_bad_kernels() -> None:
    a = torch.randn(4, 3)
    with pytest.raises(ValueError, match="kernel must be 'gaussian' or 'polynomial'"):
        mmd(a, a, kernel="laplacian")
    with pytest.raises(ValueError, match="bandwidth must be positive"):
        mmd(a, a, bandwidth=0.0)
    with pytest.raises(ValueError, match="median distance between vectors is 0"):
        mmd(torch.zeros(4, 3), torch.zeros(3, 3))


# --- image generation metrics ---------------------------------------------------------------------------------------


def test_image_generation_metrics_on_pixel_features() -> None:
    generator = torch.Generator().manual_seed(0)
    reference = 0.8 * torch.rand(40, 16, 16, 3, generator=generator, dtype=torch.float64)
    generated = 0.8 * torch.rand(30, 20, 20, 3, generator=generator, dtype=torch.float64)
    extractor = PixelFeatures(resolution=2)  # 12 features: more images than dimensions, full-rank covariances
    metrics = image_generation_metrics(generated, reference, extractor=extractor)
    features_generated, features_reference = extractor(generated), extractor(reference)
    assert metrics == pytest.approx(
        {
            "fd": frechet_distance(features_generated, features_reference),
            "mmd_gaussian": mmd(features_generated, features_reference),
            "mmd_polynomial": mmd(features_generated, features_reference, kernel="polynomial"),
        },
        rel=1e-12,
    )
    # brightening every pixel by 0.1 shifts all 2 * 2 * 3 features by 0.1 and leaves the covariance as it is
    brighter = image_generation_metrics(reference + 0.1, reference, extractor=extractor)
    assert brighter["fd"] == pytest.approx(12 * 0.1**2, rel=1e-10)
