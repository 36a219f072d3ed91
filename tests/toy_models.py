"""Small models for the tuner tests, importable by the fresh-process tests too."""

from __future__ import annotations

import torch
from torch import nn

TOY_TARGETS = ["embed", "conv", "fc1", "fc2"]


class ToyModel(nn.Module):
    """Token ids (B, L) -> (B, L, 4) through an Embedding, a Conv2d, and two Linear layers: every supported type."""

    def __init__(self, vocab: int = 20, dim: int = 12, hidden: int = 16) -> None:
        super().__init__()
        self.embed = nn.Embedding(vocab, dim)
        self.conv = nn.Conv2d(dim, hidden, kernel_size=(3, 1), padding=(1, 0))
        self.fc1 = nn.Linear(hidden, hidden)
        self.fc2 = nn.Linear(hidden, 8)
        self.norm = nn.LayerNorm(8)

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        x = self.embed(tokens)  # (B, L, dim)
        x = self.conv(x.transpose(1, 2).unsqueeze(-1)).squeeze(-1).transpose(1, 2)  # (B, L, hidden)
        x = torch.tanh(self.fc1(torch.tanh(x)))
        return self.norm(self.fc2(x))


def toy_tokens(batch: int = 3, length: int = 5, seed: int = 0) -> torch.Tensor:
    return torch.randint(0, 20, (batch, length), generator=torch.Generator().manual_seed(seed))
