"""Per-instance variational codes and the auto-decoder that pairs them with a modulated field.

Each training instance i owns a Gaussian q_i(z) = N(mu_i, diag(exp(logvar_i))). A step draws
z_i = mu_i + exp(logvar_i / 2) * eps (the reparameterisation trick, so both mu and logvar get gradients), decodes
with the shared field, and adds beta * KL(q_i || N(0, I)) to the reconstruction loss. The KL keeps the codes near
the origin, which is what makes z = 0 (the latent that `NeuralFieldModel.bake()` folds in) a meaningful mean field.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn


class VariationalCodes(nn.Module):
    """Learned (mu, logvar) for `num_instances` instances, as two `nn.Embedding` tables of width `latent_dim`.

    Args:
        num_instances: number of training instances.
        latent_dim: size of each code.
        init_std: std of the initial means (small, so every instance starts near the mean field).
        init_logvar: initial log-variance (small variance at first, so the decoder is not fed noise).
        generator: torch generator for the initial means (the global RNG when None).
    """

    def __init__(
        self,
        num_instances: int,
        latent_dim: int,
        init_std: float = 0.01,
        init_logvar: float = -6.0,
        generator: torch.Generator | None = None,
    ) -> None:
        super().__init__()
        if num_instances <= 0 or latent_dim <= 0:
            raise ValueError(f"need num_instances > 0 and latent_dim > 0, got {num_instances} and {latent_dim}")
        self.mu = nn.Embedding(num_instances, latent_dim)
        self.logvar = nn.Embedding(num_instances, latent_dim)
        with torch.no_grad():
            self.mu.weight.copy_(torch.randn(num_instances, latent_dim, generator=generator) * init_std)
            self.logvar.weight.fill_(init_logvar)

    @property
    def num_instances(self) -> int:
        return self.mu.num_embeddings

    @property
    def latent_dim(self) -> int:
        return self.mu.embedding_dim

    def forward(self, indices: Tensor, eps: Tensor | None = None) -> tuple[Tensor, Tensor]:
        """Codes and KL of the instances `indices` (B,).

        Returns (z (B, latent_dim), kl (B,)): z = mu + sigma * eps with the given standard-normal `eps`
        (B, latent_dim), or z = mu when `eps` is None (evaluation); kl is KL(N(mu, sigma^2) || N(0, I)) per instance,
        summed over dimensions.
        """
        mu, logvar = self.mu(indices), self.logvar(indices)
        z = mu if eps is None else mu + torch.exp(0.5 * logvar) * eps
        return z, kl_divergence(mu, logvar)


def kl_divergence(mu: Tensor, logvar: Tensor) -> Tensor:
    """KL(N(mu, exp(logvar)) || N(0, I)) summed over the last dimension: 0.5 * sum(mu^2 + e^logvar - 1 - logvar)."""
    return 0.5 * (mu.square() + logvar.exp() - 1.0 - logvar).sum(dim=-1)


class AutoDecoder(nn.Module):
    """A modulated `NeuralFieldModel` and its `VariationalCodes`, trained together as one module.

    One module so that Accelerate wraps both in a single DistributedDataParallel: the code tables' gradients
    are then averaged across processes with the field's.
    """

    def __init__(self, field: nn.Module, codes: VariationalCodes) -> None:
        super().__init__()
        if getattr(field.config, "baked", False):
            raise ValueError("the auto-decoder trains a modulated field: build it with baked=False")
        if field.config.latent_dim != codes.latent_dim:
            raise ValueError(f"field latent_dim {field.config.latent_dim} != codes latent_dim {codes.latent_dim}")
        self.field = field
        self.codes = codes

    def forward(self, indices: Tensor, coords: Tensor, eps: Tensor | None = None) -> tuple[Tensor, Tensor]:
        """Field values (B, P, C) at coords (B, P, coord_dim) or shared (P, coord_dim), and KL (B,)."""
        z, kl = self.codes(indices, eps)
        if coords.dim() == 2:
            coords = coords.expand(indices.shape[0], *coords.shape)
        return self.field(coords, latents=z).values, kl


__all__ = ["AutoDecoder", "VariationalCodes", "kl_divergence"]
