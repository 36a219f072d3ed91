"""The shared training loop (hf_wlora.training.loop): what the stage-1 and stage-3 runs do not already show."""

from __future__ import annotations

from types import SimpleNamespace

import pytest
import torch

from hf_wlora.training.loop import process_share


@pytest.mark.parametrize("num_processes", [1, 2, 4])
def test_process_shares_cover_the_global_batch_exactly_once(num_processes: int) -> None:
    batch = torch.arange(8)
    shares = [
        batch[process_share(SimpleNamespace(num_processes=num_processes, process_index=index), len(batch))]
        for index in range(num_processes)
    ]
    assert all(len(share) == len(batch) // num_processes for share in shares)
    assert torch.equal(torch.cat(shares), batch)  # in process order, each instance once
