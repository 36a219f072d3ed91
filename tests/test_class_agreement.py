"""Class agreement of class-conditional samples: hand-computed cases, copies left out, clear refusals."""

from __future__ import annotations

import pytest
import torch

from hf_wlora.metrics import class_agreement, flat_images


def test_agreement_per_class_on_a_hand_computed_example() -> None:
    labels = [0, 0, 1, 1, 1, 2, 2, 2]
    predicted = [0, 1, 1, 1, 0, 2, 2, 2]  # class 0: 1 of 2, class 1: 2 of 3, class 2: 3 of 3
    found = class_agreement(predicted, labels, num_classes=4)
    assert found["accuracy"] == pytest.approx(6 / 8)
    assert found["per_class"] == [pytest.approx(0.5), pytest.approx(2 / 3), 1.0, None]  # class 3 drew no sample
    assert found["lowest_class"] == 0 and found["lowest"] == pytest.approx(0.5)
    assert found["samples"] == 8 and found["unreadable"] == 0


def test_copies_can_be_left_out() -> None:
    labels = torch.tensor([0, 0, 1, 1])
    predicted = torch.tensor([0, 1, 1, 0])
    copies = torch.tensor([True, False, True, False])  # the two right answers were copies
    found = class_agreement(predicted, labels, 2, exclude=copies)
    assert found["accuracy"] == 0.0 and found["per_class"] == [0.0, 0.0] and found["samples"] == 2
    nothing_new = class_agreement(predicted, labels, 2, exclude=torch.ones(4, dtype=torch.bool))
    assert nothing_new["accuracy"] is None and nothing_new["lowest_class"] is None and nothing_new["samples"] == 0


def test_unreadable_samples_are_kept_but_never_read_as_their_class() -> None:
    labels = torch.tensor([0, 0, 1, 1])
    predicted = torch.tensor([0, 0, 1, 0])
    flat = torch.tensor([False, True, False, False])  # a blank sample that the classifier happens to read as a 0
    found = class_agreement(predicted, labels, 2, unreadable=flat)
    assert found["per_class"] == [0.5, 0.5] and found["accuracy"] == 0.5
    assert found["samples"] == 4 and found["unreadable"] == 1
    copies = torch.tensor([False, True, False, True])  # copies left out first: the blank one is not counted at all
    new = class_agreement(predicted, labels, 2, exclude=copies, unreadable=flat)
    assert new["per_class"] == [1.0, 1.0] and new["samples"] == 2 and new["unreadable"] == 0


def test_flat_images_are_those_with_less_contrast_than_every_reference() -> None:
    torch.manual_seed(0)
    reference = torch.rand(5, 8, 8, 3)
    reference[0] = 0.5
    reference[0, :4] = 0.7  # the least contrasted reference: std 0.1 exactly
    images = torch.stack(
        [
            torch.full((8, 8, 3), 0.3),  # uniform: std 0
            torch.full((8, 8, 3), 0.5) + 0.01 * torch.randn(8, 8, 3),  # faint speckle: std about 0.01
            reference[0],  # exactly as flat as the flattest reference: not flatter
            reference[1],
        ]
    )
    assert flat_images(images, reference).tolist() == [True, True, False, False]
    with pytest.raises(ValueError, match="images must be a non-empty"):
        flat_images(images[0], reference)
    with pytest.raises(ValueError, match="reference must be a non-empty"):
        flat_images(images, reference[:0])
    with pytest.raises(ValueError, match="reference contain NaN"):
        flat_images(images, torch.full_like(reference, float("nan")))


@pytest.mark.parametrize(
    ("arguments", "message"),
    [
        (([0, 1], [0], 2), "must be \\(S,\\) tensors of one length"),
        (([0, 2], [0, 1], 2), "predicted must hold class ids in \\[0, 2\\)"),
        (([0, 1], [-1, 1], 2), "labels must hold class ids"),
        (([0], [0], 0), "num_classes must be a positive int"),
    ],
)
def test_bad_input_is_refused(arguments: tuple, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        class_agreement(*arguments)
    with pytest.raises(ValueError, match="exclude must be a bool tensor"):
        class_agreement([0, 1], [0, 1], 2, exclude=torch.tensor([1, 0]))
    with pytest.raises(ValueError, match="unreadable must be a bool tensor of shape \\(2,\\)"):
        class_agreement([0, 1], [0, 1], 2, unreadable=torch.tensor([True]))
