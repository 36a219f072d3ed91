"""The learned feature extractor: deterministic for a seed, cached by fingerprint, and able to tell sets apart."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from hf_wlora.metrics import LearnedImageFeatures, frechet_distance, image_generation_figures, learned_image_features

STEPS = 100  # enough for bars of two orientations to separate; seconds on one core


def bars(count: int, vertical: bool, seed: int) -> torch.Tensor:
    """(count, 16, 16, 3) images of one dark bar, vertical or horizontal, at a random position, on random grey."""
    generator = torch.Generator().manual_seed(seed)
    images = 0.6 + 0.4 * torch.rand(count, 1, 1, 1, generator=generator).expand(count, 16, 16, 3).clone()
    for image, position in zip(images, torch.randint(2, 14, (count,), generator=generator).tolist(), strict=True):
        if vertical:
            image[:, position - 1 : position + 1] = 0.1
        else:
            image[position - 1 : position + 1, :] = 0.1
    return images


@pytest.fixture(scope="module")
def references() -> tuple[torch.Tensor, list[int]]:
    images = torch.cat([bars(24, vertical=True, seed=0), bars(24, vertical=False, seed=1)])
    return images, [0] * 24 + [1] * 24


def test_training_is_deterministic_for_a_seed_and_leaves_the_global_rng_alone(references) -> None:
    images, labels = references
    state = torch.random.get_rng_state()
    first = LearnedImageFeatures.train_on(images, labels, seed=3, steps=10)
    assert torch.equal(torch.random.get_rng_state(), state)
    second = LearnedImageFeatures.train_on(images, labels, seed=3, steps=10)
    other_seed = LearnedImageFeatures.train_on(images, labels, seed=4, steps=10)
    assert first.kind == "classifier" and first.config["num_classes"] == 2
    assert torch.equal(first(images), second(images))
    assert not torch.equal(first(images), other_seed(images))
    features = first(images)
    assert features.shape == (48, 64) and torch.isfinite(features).all()


def test_fd_is_zero_for_a_set_with_itself_and_large_for_separable_sets(references) -> None:
    images, labels = references
    extractor = LearnedImageFeatures.train_on(images, labels, seed=0, steps=STEPS)
    assert extractor.config["train_accuracy"] == 1.0
    held_out = torch.cat([bars(16, True, seed=20), bars(16, False, seed=21)])
    assert (extractor.predict_classes(held_out) == torch.tensor([0] * 16 + [1] * 16)).float().mean() >= 0.9
    extractor.train()  # reading images leaves the caller's mode as it was
    assert torch.equal(extractor.predict_classes(held_out), extractor.eval().predict_classes(held_out))
    assert not extractor.training and extractor.train().predict_classes(held_out[:1]).shape == (1,)
    assert extractor.training
    vertical, horizontal = extractor(bars(32, True, seed=10)), extractor(bars(32, False, seed=11))
    more_vertical = extractor(bars(32, True, seed=12))
    assert frechet_distance(vertical, vertical) == pytest.approx(0.0, abs=1e-6)
    same, apart = frechet_distance(vertical, more_vertical), frechet_distance(vertical, horizontal)
    assert apart > 5 * same, (same, apart)


def test_unlabelled_references_train_an_autoencoder_that_separates_too(references) -> None:
    images, _ = references
    for labels in (None, [-1] * 48, [0] * 48):  # no labels, unlabelled instances, a single class
        assert LearnedImageFeatures.train_on(images, labels, seed=0, steps=2).kind == "autoencoder"
    extractor = LearnedImageFeatures.train_on(images, None, seed=0, steps=2 * STEPS)
    assert extractor.config["train_mse"] < 0.1
    vertical, horizontal = extractor(bars(32, True, seed=10)), extractor(bars(32, False, seed=11))
    apart = frechet_distance(vertical, horizontal)
    assert apart > 3 * frechet_distance(vertical, extractor(bars(32, True, seed=12)))
    with pytest.raises(ValueError, match="predict_classes needs a classifier"):
        extractor.predict_classes(images)


def test_the_cache_reloads_the_same_extractor_and_retrains_for_other_references(references, tmp_path: Path) -> None:
    images, labels = references
    trained = learned_image_features(images, labels, seed=0, cache_dir=tmp_path, steps=10)
    config = json.loads((tmp_path / "config.json").read_text())
    assert config["fingerprint"] == trained.config["fingerprint"] and (tmp_path / "model.safetensors").is_file()
    reloaded = learned_image_features(images, labels, seed=0, cache_dir=tmp_path, steps=10)
    assert torch.equal(reloaded(images), trained(images))  # loaded, or trained again identically: same features
    assert LearnedImageFeatures.from_pretrained(tmp_path).config == trained.config
    other = learned_image_features(images.flip(0), labels[::-1], seed=0, cache_dir=tmp_path, steps=10)
    assert other.config["fingerprint"] != trained.config["fingerprint"]
    assert json.loads((tmp_path / "config.json").read_text())["fingerprint"] == other.config["fingerprint"]


def test_bad_input_is_refused_by_name(references, tmp_path: Path) -> None:
    images, labels = references
    with pytest.raises(ValueError, match="labels must be 48 integer class ids"):
        LearnedImageFeatures.train_on(images, [0.5] * 48)
    with pytest.raises(ValueError, match="labels must be 48 integer class ids"):
        LearnedImageFeatures.train_on(images, labels[:10])
    with pytest.raises(ValueError, match=r"\(N, H, W, 3\)"):
        LearnedImageFeatures.train_on(images[..., 0])
    with pytest.raises(ValueError, match="steps must be a positive integer"):
        LearnedImageFeatures.train_on(images, labels, steps=0)
    with pytest.raises(ValueError, match="holds no learned feature extractor"):
        LearnedImageFeatures.from_pretrained(tmp_path)
    with pytest.raises(ValueError, match="a classifier needs at least 2 classes"):
        LearnedImageFeatures("classifier", num_classes=1)


def test_generation_figures_read_class_conditional_samples_with_the_classifier(references) -> None:
    images, labels = references
    classifier = LearnedImageFeatures.train_on(images, labels, seed=0, steps=STEPS)
    vertical, horizontal = bars(2, True, seed=30), bars(4, False, seed=31)
    samples = torch.cat([vertical, horizontal])  # drawn for classes 0, 0, 1, 1 and 2, 2 (a class without images)
    figures = image_generation_figures(samples, images, learned_features=classifier, labels=[0, 0, 1, 1, 2, 2])
    every, new = figures["class_agreement"], figures["class_agreement_without_copies"]
    assert every["per_class"] == [1.0, 1.0, 0.0] and every["lowest_class"] == 2  # no sample is ever read as a 2
    assert new["samples"] == 6 - round(6 * figures["memorization"]["copy_fraction"])
    assert "class_agreement" not in image_generation_figures(samples, images, learned_features=classifier)
    assert image_generation_figures(samples, images, labels=[0] * 6)["class_agreement"] is None  # no classifier
    # a blank sample is read as some class by the classifier, but never counts as read as its own
    blank = torch.full_like(samples[:2], 0.5)
    blank_class = int(classifier.predict_classes(blank)[0])
    read = image_generation_figures(blank, images, learned_features=classifier, labels=[blank_class] * 2)
    assert read["class_agreement"]["accuracy"] == 0.0 and read["class_agreement"]["unreadable"] == 2
