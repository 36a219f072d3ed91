"""Class agreement of class-conditional samples: hand-computed cases, copies left out, clear refusals."""

from __future__ import annotations

import pytest
import torch

from hf_wlora.metrics import class_agreement


def test_agreement_per_class_on_a_hand_computed_example() -> None:
    labels = [0, 0, 1, 1, 1, 2, 2, 2]
    predicted = [0, 1, 1, 1, 0, 2, 2, 2]  # class 0: 1 of 2, class 1: 2 of 3, class 2: 3 of 3
    found = class_agreement(predicted, labels, num_classes=4)
    assert found["accuracy"] == pytest.approx(6 / 8)
    assert found["per_class"] == [pytest.approx(0.5), pytest.approx(2 / 3), 1.0, None]  # class 3 drew no sample
    assert found["lowest_class"] == 0 and found["lowest"] == pytest.approx(0.5)
    assert found["samples"] == 8


def test_copies_can_be_left_out() -> None:
    labels = torch.tensor([0, 0, 1, 1])
    predicted = torch.tensor([0, 1, 1, 0])
    copies = torch.tensor([True, False, True, False])  # the two right answers were copies
    found = class_agreement(predicted, labels, 2, exclude=copies)
    assert found["accuracy"] == 0.0 and found["per_class"] == [0.0, 0.0] and found["samples"] == 2
    nothing_new = class_agreement(predicted, labels, 2, exclude=torch.ones(4, dtype=torch.bool))
    assert nothing_new["accuracy"] is None and nothing_new["lowest_class"] is None and nothing_new["samples"] == 0


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
