"""Structural similarity (SSIM) per image, the standard Gaussian-window definition of Wang et al. (2004).

It reproduces `skimage.metrics.structural_similarity(..., gaussian_weights=True, sigma=1.5,
use_sample_covariance=False, channel_axis=-1)` so that numbers compare with published ones, but runs in torch on a
whole batch at once (one separable convolution for all images and channels) instead of one image at a time.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

_SIGMA = 1.5
# scikit-image truncates the Gaussian at 3.5 sigma (radius int(3.5 * 1.5 + 0.5) = 5): an 11-tap window, as in the paper
_RADIUS = int(3.5 * _SIGMA + 0.5)
_K1, _K2 = 0.01, 0.03


def _gaussian_window(dtype: torch.dtype, device: torch.device) -> torch.Tensor:
    """The normalised 1-D Gaussian that scipy.ndimage (under scikit-image) uses for sigma 1.5."""
    offsets = torch.arange(-_RADIUS, _RADIUS + 1, dtype=dtype, device=device)
    weights = torch.exp(-0.5 * (offsets / _SIGMA) ** 2)
    return weights / weights.sum()


def _local_mean(images: torch.Tensor, window: torch.Tensor) -> torch.Tensor:
    """Gaussian-weighted local means of (B, 1, H, W) images at every pixel whose window lies inside the image.

    scikit-image filters with reflected borders and then crops the window radius from every side before averaging, which
    leaves exactly these unpadded ("valid") positions, so no border handling is needed here.
    """
    images = F.conv2d(images, window.view(1, 1, -1, 1))
    return F.conv2d(images, window.view(1, 1, 1, -1))


def ssim(prediction: torch.Tensor, target: torch.Tensor, data_range: float = 1.0) -> torch.Tensor:
    """Mean SSIM per instance of (N, H, W, C) images (C = 1 or 3, channels last) on [0, data_range]; returns (N,).

    The SSIM map uses an 11x11 Gaussian window (sigma 1.5), K1 = 0.01, K2 = 0.03 and population (co)variances; it is
    averaged over pixels and channels. As in `psnr`, the prediction is clamped to the data range first, as a displayed
    image would be. Computation is in the inputs' floating dtype (at least float32), like scikit-image's.
    """
    if prediction.shape != target.shape:
        raise ValueError(f"prediction {tuple(prediction.shape)} and target {tuple(target.shape)} differ in shape.")
    if prediction.ndim != 4 or prediction.shape[-1] not in (1, 3):
        raise ValueError(
            f"SSIM expects (N, H, W, C) images with C = 1 or 3 channels last, got shape {tuple(prediction.shape)}; "
            "move a channels-first batch with images.permute(0, 2, 3, 1)."
        )
    size = 2 * _RADIUS + 1
    if min(prediction.shape[1:3]) < size:
        raise ValueError(f"SSIM needs images of at least {size}x{size} pixels, got {tuple(prediction.shape[1:3])}.")
    if not data_range > 0:
        raise ValueError(f"data_range must be positive, got {data_range}.")
    for name, images in (("prediction", prediction), ("target", target)):
        if not torch.isfinite(images).all():
            raise ValueError(f"{name} contains NaN or infinite values.")

    n, height, width, channels = prediction.shape
    dtype = torch.promote_types(torch.promote_types(prediction.dtype, target.dtype), torch.float32)
    # every channel of every image becomes one single-channel image of the batch
    x, y = (
        images.to(dtype).permute(0, 3, 1, 2).reshape(n * channels, 1, height, width)
        for images in (prediction.clamp(0.0, data_range), target)
    )
    window = _gaussian_window(dtype, x.device)
    mean_x, mean_y, mean_xx, mean_yy, mean_xy = _local_mean(torch.cat([x, y, x * x, y * y, x * y]), window).chunk(5)
    var_x, var_y = mean_xx - mean_x**2, mean_yy - mean_y**2
    cov_xy = mean_xy - mean_x * mean_y
    c1, c2 = (_K1 * data_range) ** 2, (_K2 * data_range) ** 2
    ssim_map = ((2 * mean_x * mean_y + c1) * (2 * cov_xy + c2)) / ((mean_x**2 + mean_y**2 + c1) * (var_x + var_y + c2))
    return ssim_map.reshape(n, -1).mean(dim=1)
