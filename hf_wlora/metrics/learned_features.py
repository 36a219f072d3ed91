"""Image features learned from the reference set itself, for FD and MMD that see what pixels cannot.

Pixel distances cannot tell a clean digit from a plausible blur of one, and the published alternative (Inception,
CLIP, DINOv2) needs downloaded weights. So hf_wlora trains a small network on the reference images: a CNN classifier
when every reference has a class label (its penultimate activations: FD on them is a Fréchet classifier distance),
a convolutional autoencoder otherwise (its bottleneck). Both see images resized to 32 x 32, train in seconds on a
CPU for a few hundred references, and are deterministic for a seed on one machine and thread count.
`learned_image_features` trains one or reloads it from a cache folder (safetensors and JSON), keyed by a fingerprint
of the references, their labels and the settings, so every system of a study is measured by the same network.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from .features import check_images, resized_channels_first

CONFIG_NAME = "config.json"
WEIGHTS_NAME = "model.safetensors"
KINDS = ("classifier", "autoencoder")
# Training of the default extractor: enough for a 64-d embedding of a few hundred 32 x 32 references to separate
# their classes (or reconstruct them) without the minutes a larger network would take on a CPU.
DEFAULT_TRAINING = {"steps": 800, "batch_size": 64, "learning_rate": 2e-3, "max_shift": 2}


class LearnedImageFeatures(nn.Module):
    """A small convolutional encoder to `feature_dim` features, with a class head or a decoder to train it.

    Call it on (N, H, W, 3) images on [0, 1] for (N, feature_dim) features (the `ImageFeatureExtractor` protocol).
    Build and train one with `LearnedImageFeatures.train_on`; save and reload it with `save_pretrained` /
    `from_pretrained` (a folder of `config.json` and `model.safetensors`).
    """

    def __init__(
        self, kind: str, num_classes: int = 0, feature_dim: int = 64, resolution: int = 32, **record: Any
    ) -> None:
        super().__init__()
        if kind not in KINDS:
            raise ValueError(f"kind must be one of {KINDS}, got {kind!r}.")
        if kind == "classifier" and num_classes < 2:
            raise ValueError(f"a classifier needs at least 2 classes, got {num_classes}; use kind='autoencoder'.")
        if resolution % 8 or resolution < 8:
            raise ValueError(f"resolution must be a positive multiple of 8, got {resolution}.")
        self.config = {
            "kind": kind,
            "num_classes": num_classes,
            "feature_dim": feature_dim,
            "resolution": resolution,
            **record,
        }
        side = resolution // 8
        self.encoder = nn.Sequential(
            nn.Conv2d(3, 16, 3, padding=1),
            nn.GELU(),
            nn.Conv2d(16, 32, 4, stride=2, padding=1),
            nn.GELU(),
            nn.Conv2d(32, 64, 4, stride=2, padding=1),
            nn.GELU(),
            nn.Conv2d(64, 64, 4, stride=2, padding=1),
            nn.GELU(),
            nn.Flatten(),
            nn.Linear(64 * side * side, feature_dim),
        )
        if kind == "classifier":
            # the features are the penultimate activations: the head sees them through one nonlinearity
            self.head: nn.Module = nn.Sequential(nn.GELU(), nn.Linear(feature_dim, num_classes))
        else:
            self.head = nn.Sequential(
                nn.Linear(feature_dim, 64 * side * side),
                nn.GELU(),
                nn.Unflatten(1, (64, side, side)),
                nn.ConvTranspose2d(64, 32, 4, stride=2, padding=1),
                nn.GELU(),
                nn.ConvTranspose2d(32, 16, 4, stride=2, padding=1),
                nn.GELU(),
                nn.ConvTranspose2d(16, 3, 4, stride=2, padding=1),
            )

    @property
    def kind(self) -> str:
        return self.config["kind"]

    def _inputs(self, images: torch.Tensor) -> torch.Tensor:
        """(N, H, W, 3) on [0, 1] -> (N, 3, R, R) on [-1, 1]."""
        return resized_channels_first(images, self.config["resolution"]).float() * 2.0 - 1.0

    def embed(self, inputs: torch.Tensor) -> torch.Tensor:
        """Features of prepared (N, 3, R, R) inputs: a classifier's penultimate activations, an autoencoder's code."""
        codes = self.encoder(inputs)
        return F.gelu(codes) if self.kind == "classifier" else codes

    @torch.no_grad()
    def __call__(self, images: torch.Tensor) -> torch.Tensor:  # type: ignore[override]
        return self._evaluate(images, self.embed)

    def _evaluate(self, images: torch.Tensor, compute: Callable[[torch.Tensor], torch.Tensor]) -> torch.Tensor:
        """`compute` of the prepared images in eval mode, in batches on the model's device, gathered on the CPU; the
        training mode is left as it was."""
        check_images(images)
        was_training = self.training
        self.eval()
        try:
            device = next(self.parameters()).device
            return torch.cat([compute(self._inputs(batch).to(device)).cpu() for batch in images.split(256)])
        finally:
            self.train(was_training)

    @torch.no_grad()
    def predict_classes(self, images: torch.Tensor) -> torch.Tensor:
        """A classifier's predicted class of each (N, H, W, 3) image on [0, 1], e.g. to check it on held-out images."""
        if self.kind != "classifier":
            raise ValueError("predict_classes needs a classifier; this extractor is an autoencoder (no classes).")
        return self._evaluate(images, lambda inputs: self.head(self.embed(inputs)).argmax(dim=1))

    def loss(self, inputs: torch.Tensor, labels: torch.Tensor | None) -> tuple[torch.Tensor, torch.Tensor]:
        """The training loss of prepared inputs, and its per-image quality (correct class, or minus the MSE)."""
        codes = self.encoder(inputs)
        if self.kind == "classifier":
            logits = self.head(F.gelu(codes))
            return F.cross_entropy(logits, labels), (logits.argmax(dim=1) == labels).float()
        errors = (self.head(codes).tanh() - inputs).pow(2).flatten(1).mean(dim=1)
        return errors.mean(), -errors

    @classmethod
    def train_on(
        cls,
        images: torch.Tensor,
        labels: Sequence[int] | torch.Tensor | np.ndarray | None = None,
        seed: int = 0,
        steps: int = DEFAULT_TRAINING["steps"],
        batch_size: int = DEFAULT_TRAINING["batch_size"],
        learning_rate: float = DEFAULT_TRAINING["learning_rate"],
        max_shift: int = DEFAULT_TRAINING["max_shift"],
        feature_dim: int = 64,
        resolution: int = 32,
    ) -> LearnedImageFeatures:
        """Train an extractor on (N, H, W, 3) reference images on [0, 1]: a classifier when `labels` gives every image
        a class >= 0 and there are 2 classes or more, an autoencoder otherwise.

        AdamW with cosine decay, minibatches drawn with replacement, every image a random view (`_augmented`: an
        affine warp with shifts of up to `max_shift` pixels, and a colour change). Everything random comes from `seed`;
        the global RNG is left as it was. The returned model is in eval mode, on the CPU, with its training accuracy
        (classifier) or reconstruction MSE (autoencoder) in `config`.
        """
        check_images(images)
        targets = _class_targets(labels, len(images))
        kind = "classifier" if targets is not None else "autoencoder"
        num_classes = int(targets.max()) + 1 if targets is not None else 0
        settings = {"steps": steps, "batch_size": batch_size, "learning_rate": learning_rate, "max_shift": max_shift}
        for name in ("steps", "batch_size"):
            if not isinstance(settings[name], int) or settings[name] < 1:
                raise ValueError(f"{name} must be a positive integer, got {settings[name]!r}.")
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            model = cls(kind, num_classes, feature_dim, resolution, seed=seed, **settings)
        generator = torch.Generator().manual_seed(seed)
        inputs = model._inputs(images)
        optimizer = torch.optim.AdamW(model.parameters(), lr=learning_rate, weight_decay=1e-4)
        schedule = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, steps)
        model.train()
        for _ in range(steps):
            batch = torch.randint(len(inputs), (min(batch_size, len(inputs)),), generator=generator)
            views = _augmented(inputs[batch], max_shift, generator)
            loss, _ = model.loss(views, None if targets is None else targets[batch])
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            schedule.step()
        model.eval()
        with torch.no_grad():
            quality = torch.cat(
                [
                    model.loss(chunk, None if targets is None else targets[start : start + len(chunk)])[1]
                    for start, chunk in zip(range(0, len(inputs), 256), inputs.split(256), strict=True)
                ]
            )
        model.config["train_accuracy" if kind == "classifier" else "train_mse"] = float(quality.mean().abs())
        return model

    def save_pretrained(self, folder: str | Path) -> None:
        """Write `config.json` and `model.safetensors` into `folder`."""
        from safetensors.torch import save_file

        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        save_file({name: value.contiguous() for name, value in self.state_dict().items()}, folder / WEIGHTS_NAME)
        (folder / CONFIG_NAME).write_text(json.dumps(self.config, indent=2) + "\n")

    @classmethod
    def from_pretrained(cls, folder: str | Path) -> LearnedImageFeatures:
        """Load an extractor written by `save_pretrained` (safetensors only: nothing is unpickled)."""
        from safetensors.torch import load_file

        folder = Path(folder)
        config_path, weights_path = folder / CONFIG_NAME, folder / WEIGHTS_NAME
        if not (config_path.is_file() and weights_path.is_file()):
            raise ValueError(
                f"{folder} holds no learned feature extractor ({CONFIG_NAME} and {WEIGHTS_NAME}); write one with "
                "LearnedImageFeatures.save_pretrained or learned_image_features(..., cache_dir=folder)."
            )
        config = json.loads(config_path.read_text())
        model = cls(**config)
        model.load_state_dict(load_file(weights_path))
        return model.eval()


def learned_image_features(
    images: torch.Tensor,
    labels: Sequence[int] | torch.Tensor | np.ndarray | None = None,
    seed: int = 0,
    cache_dir: str | Path | None = None,
    **training: Any,
) -> LearnedImageFeatures:
    """The learned feature extractor of a reference set: trained by `LearnedImageFeatures.train_on`, or reloaded.

    With `cache_dir`, an extractor saved there for the same references, labels, seed and training settings (their
    fingerprint is in its config) is loaded instead of trained, and a newly trained one is saved there; an extractor
    of other references is replaced.
    """
    check_images(images)
    fingerprint = _fingerprint(images, _class_targets(labels, len(images)), seed, {**DEFAULT_TRAINING, **training})
    if cache_dir is not None and (Path(cache_dir) / CONFIG_NAME).is_file():
        cached = json.loads((Path(cache_dir) / CONFIG_NAME).read_text())
        if cached.get("fingerprint") == fingerprint:
            return LearnedImageFeatures.from_pretrained(cache_dir)
    model = LearnedImageFeatures.train_on(images, labels, seed, **training)
    model.config["fingerprint"] = fingerprint
    if cache_dir is not None:
        model.save_pretrained(cache_dir)
    return model


def _class_targets(labels: Sequence[int] | torch.Tensor | np.ndarray | None, count: int) -> torch.Tensor | None:
    """Class labels as int64 when every image has one (>= 0) and there are at least 2 classes; else None."""
    if labels is None:
        return None
    targets = torch.as_tensor(np.asarray(labels))
    if targets.shape != (count,) or targets.dtype.is_floating_point or targets.dtype == torch.bool:
        raise ValueError(
            f"labels must be {count} integer class ids, one per image (-1 for an unlabelled image), got "
            f"{targets.dtype} of shape {tuple(targets.shape)}."
        )
    targets = targets.long()
    if (targets < 0).any() or targets.unique().numel() < 2:
        return None
    return targets


def _augmented(inputs: torch.Tensor, max_shift: int, generator: torch.Generator) -> torch.Tensor:
    """Random views of prepared (N, 3, R, R) inputs on [-1, 1], so that a few hundred references train features that
    generalise to images the network has not seen (held-out accuracy on the built-in glyphs: 0.16 with shifts only,
    0.89 with these): an affine warp (rotation, scale, shear, a shift of up to `max_shift` pixels; edges repeated)
    and a colour change (channels permuted, the sign flipped, each channel scaled). The features thus ignore colour,
    which the pixel features still measure."""
    count, side = len(inputs), inputs.shape[-1]

    def uniform(low: float, high: float) -> torch.Tensor:
        return low + (high - low) * torch.rand(count, generator=generator)

    angle, scale, shear = uniform(-0.3, 0.3), uniform(0.85, 1.15), uniform(-0.2, 0.2)
    shift_x, shift_y = (uniform(-max_shift, max_shift) * 2.0 / side for _ in range(2))
    cos, sin = angle.cos() * scale, angle.sin() * scale
    theta = torch.stack([torch.stack([cos, shear - sin, shift_x], 1), torch.stack([sin, cos, shift_y], 1)], 1)
    grid = F.affine_grid(theta, list(inputs.shape), align_corners=False)
    warped = F.grid_sample(inputs, grid, padding_mode="border", align_corners=False)
    order = torch.stack([torch.randperm(3, generator=generator) for _ in range(count)])
    permuted = torch.gather(warped, 1, order[:, :, None, None].expand_as(warped))
    sign = torch.where(torch.rand(count, 1, 1, 1, generator=generator) < 0.5, -1.0, 1.0)
    gain = 0.6 + 0.8 * torch.rand(count, 3, 1, 1, generator=generator)
    return (permuted * sign * gain).clamp(-1.0, 1.0)


def _fingerprint(images: torch.Tensor, targets: torch.Tensor | None, seed: int, settings: dict[str, Any]) -> str:
    digest = hashlib.sha256(images.detach().to("cpu", torch.float32).contiguous().numpy().tobytes())
    digest.update(b"none" if targets is None else targets.numpy().tobytes())
    digest.update(json.dumps({"seed": seed, **settings}, sort_keys=True).encode())
    return digest.hexdigest()
