"""Image features for set-level metrics (Fréchet distance, MMD): raw pixels by default, a local backbone when available.

Published FID/KID numbers use Inception features, which need downloaded weights; our machines cannot download any, so
the default extractor, `PixelFeatures`, needs none. Pixel-feature distances compare runs of this library with each
other but not with published Inception numbers. Users who have a vision backbone saved locally (a CLIP vision tower,
DINOv2, ...) get "Inception-style" features from `TransformersImageFeatures`; any callable with the
`ImageFeatureExtractor` signature plugs in the same way.
"""

from __future__ import annotations

from typing import Protocol

import torch
import torch.nn.functional as F

from .reconstruction import check_value_range


class ImageFeatureExtractor(Protocol):
    """Maps (N, H, W, 3) float images on [0, 1] (channels last) to (N, D) float features."""

    def __call__(self, images: torch.Tensor) -> torch.Tensor: ...


def check_images(images: torch.Tensor, name: str = "images") -> None:
    """Refuse anything but a non-empty (N, H, W, 3) float tensor on [0, 1], naming the argument (`name`) and the fix."""
    if not isinstance(images, torch.Tensor) or images.ndim != 4 or images.shape[-1] != 3 or len(images) == 0:
        shape = tuple(images.shape) if isinstance(images, torch.Tensor) else type(images).__name__
        raise ValueError(
            f"{name} must be a non-empty (N, H, W, 3) tensor (RGB, channels last), got {shape}; repeat a grey channel "
            f"with {name}.expand(-1, -1, -1, 3) and move channels last with {name}.permute(0, 2, 3, 1)."
        )
    check_value_range(images, name)


class PixelFeatures:
    """The default extractor: every image resized to resolution x resolution and flattened to resolution² x 3 values.

    Downsampling averages pixel areas (no aliasing); an image smaller than the resolution on either side is resized
    with antialiased bilinear interpolation instead. The features need no weights, so they work offline everywhere.
    """

    def __init__(self, resolution: int = 32) -> None:
        if resolution < 1:
            raise ValueError(f"resolution must be a positive number of pixels, got {resolution}.")
        self.resolution = resolution

    def __call__(self, images: torch.Tensor) -> torch.Tensor:
        check_images(images)
        return resized_channels_first(images, self.resolution).permute(0, 2, 3, 1).flatten(1)


def resized_channels_first(images: torch.Tensor, resolution: int) -> torch.Tensor:
    """(N, H, W, 3) images as (N, 3, resolution, resolution), at least float32: area averaging when downsampling
    (no aliasing), antialiased bilinear interpolation when either side is smaller than `resolution`."""
    size = (resolution, resolution)
    channels_first = images.to(torch.promote_types(images.dtype, torch.float32)).permute(0, 3, 1, 2)
    if min(images.shape[1:3]) >= resolution:
        return F.interpolate(channels_first, size=size, mode="area")
    return F.interpolate(channels_first, size=size, mode="bilinear", antialias=True, align_corners=False)


class TransformersImageFeatures:
    """Features from a transformers vision backbone saved locally: its `pooler_output`, else its mean token.

    `name_or_path` is a folder (or a Hub id already in the local cache) holding the model and its image processor,
    e.g. a `CLIPVisionModel` or DINOv2 saved with `save_pretrained`. Downloaded code is never run (no
    `trust_remote_code`), and by default nothing is downloaded either (`local_files_only=True`).
    """

    def __init__(
        self,
        name_or_path: str,
        device: str | torch.device | None = None,
        batch_size: int = 64,
        local_files_only: bool = True,
    ) -> None:
        from transformers import AutoImageProcessor, AutoModel

        if batch_size < 1:
            raise ValueError(f"batch_size must be positive, got {batch_size}.")
        try:
            self.processor = AutoImageProcessor.from_pretrained(name_or_path, local_files_only=local_files_only)
            model = AutoModel.from_pretrained(name_or_path, local_files_only=local_files_only)
        except OSError as error:  # transformers' "can't load" for a missing folder, file or cache entry
            raise ValueError(
                f"Cannot load a vision backbone from {name_or_path!r} ({error}). Give a folder written by "
                "save_pretrained that holds the model and its image processor (e.g. CLIPVisionModel and "
                "CLIPImageProcessor), or a Hub id already in the local cache."
            ) from error
        if model.main_input_name != "pixel_values":
            raise ValueError(
                f"{name_or_path} loads a {type(model).__name__}, whose input is {model.main_input_name}, not images; "
                "save its vision tower alone (e.g. CLIPVisionModel.from_pretrained(...).save_pretrained(folder)) "
                "and pass that folder."
            )
        self.device = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
        self.model = model.to(self.device).eval()
        self.batch_size = batch_size

    @torch.no_grad()
    def __call__(self, images: torch.Tensor) -> torch.Tensor:
        check_images(images)
        features = []
        for batch in images.detach().float().cpu().split(self.batch_size):
            inputs = self.processor(
                images=list(batch.numpy()), return_tensors="pt", do_rescale=False, input_data_format="channels_last"
            )
            outputs = self.model(pixel_values=inputs["pixel_values"].to(self.device, self.model.dtype))
            pooled = getattr(outputs, "pooler_output", None)
            pooled = outputs.last_hidden_state.mean(dim=1) if pooled is None else pooled
            features.append(pooled.flatten(1).float().cpu())  # convolutional poolers give (N, C, 1, 1)
        return torch.cat(features)


def image_features(images: torch.Tensor, extractor: ImageFeatureExtractor | None = None) -> torch.Tensor:
    """Features of (N, H, W, 3) images on [0, 1] from `extractor` (default `PixelFeatures()`), checked to be (N, D)."""
    check_images(images)
    features = (PixelFeatures() if extractor is None else extractor)(images)
    if not isinstance(features, torch.Tensor) or features.ndim != 2 or len(features) != len(images):
        shape = tuple(features.shape) if isinstance(features, torch.Tensor) else type(features).__name__
        raise ValueError(f"the extractor must return ({len(images)}, D) feature tensors, got {shape}.")
    if not torch.isfinite(features).all():
        raise ValueError("the extractor returned NaN or infinite features.")
    return features
