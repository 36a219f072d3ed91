"""Does the learned feature extractor see what pixels cannot? FD of degraded held-out glyphs, learned vs pixels.

Trains the default `LearnedImageFeatures` (a classifier) on 128 built-in glyphs, then measures FD against them of
128 *other* glyphs of the same distribution, clean and degraded: a 3x3 and a 5x5 box blur, Gaussian noise of std
0.15, and horizontal streaks (each image averaged half-way with its row means). Prints each FD and its ratio to the
clean held-out set's, for the learned features and for pixels, and the classifier's held-out accuracy. A useful
extractor rates blur and streaks far worse than clean new glyphs.

Run: `OMP_NUM_THREADS=2 python benchmarks/check_learned_features.py` (about a minute on 2 CPU cores).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from hf_wlora.data import open_data_source
from hf_wlora.metrics import LearnedImageFeatures, PixelFeatures, frechet_distance


def box_blur(images: torch.Tensor, size: int) -> torch.Tensor:
    channels_first = images.permute(0, 3, 1, 2)
    blurred = F.avg_pool2d(channels_first, size, stride=1, padding=size // 2, count_include_pad=False)
    return blurred.permute(0, 2, 3, 1)


def main() -> None:
    source = open_data_source("builtin-glyphs", {"num_instances": 256, "resolution": 32})
    images = torch.stack([torch.as_tensor(source[index].image) for index in range(len(source))])
    labels = torch.tensor([source[index].label for index in range(len(source))])
    training, held_out = images[:128], images[128:]
    extractor = LearnedImageFeatures.train_on(training, labels[:128], seed=0)
    accuracy = float((extractor.predict_classes(held_out) == labels[128:]).float().mean())
    noise = 0.15 * torch.randn(held_out.shape, generator=torch.Generator().manual_seed(0))
    sets = {
        "held-out glyphs": held_out,
        "3x3 blur": box_blur(held_out, 3),
        "5x5 blur": box_blur(held_out, 5),
        "noise 0.15": (held_out + noise).clamp(0, 1),
        "streaks": 0.5 * held_out + 0.5 * held_out.mean(dim=2, keepdim=True),
    }
    print(f"classifier: training accuracy {extractor.config['train_accuracy']:.2f}, held-out accuracy {accuracy:.2f}")
    print("| set | FD, learned | ratio | FD, pixels | ratio |")
    print("|---|---|---|---|---|")
    learned_reference, pixel_reference = extractor(training), PixelFeatures()(training)
    base = None
    for name, degraded in sets.items():
        learned = frechet_distance(extractor(degraded), learned_reference)
        pixels = frechet_distance(PixelFeatures()(degraded), pixel_reference)
        base = base or (learned, pixels)
        print(f"| {name} | {learned:.0f} | {learned / base[0]:.2f} | {pixels:.1f} | {pixels / base[1]:.2f} |")


if __name__ == "__main__":
    main()
