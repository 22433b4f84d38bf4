"""PCA and the exact t-SNE used by notebook 02 on clusters with a known structure."""

from __future__ import annotations

import pytest
import torch

from lib.cache.projection import kl_divergence, pca, tsne


def clusters(n_per: int = 40, k: int = 4, dim: int = 32) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(0)
    centres = torch.randn(k, dim, generator=g) * 5
    x = torch.cat([c + torch.randn(n_per, dim, generator=g) for c in centres])
    return x, torch.arange(k).repeat_interleave(n_per)


def nearest_neighbour_agreement(y: torch.Tensor, labels: torch.Tensor) -> float:
    d = torch.cdist(y, y)
    d.fill_diagonal_(float("inf"))
    return float((labels[d.argmin(dim=1)] == labels).float().mean())


def test_pca_recovers_the_dominant_axes() -> None:
    g = torch.Generator().manual_seed(1)
    x = torch.randn(200, 10, generator=g) * torch.tensor([10.0, 5.0] + [0.1] * 8)
    proj, ratio = pca(x)
    assert proj.shape == (200, 2) and ratio[0] > ratio[1] > 0.15 and ratio.sum() > 0.99
    assert torch.allclose(proj[:, 0].abs(), (x[:, 0] - x[:, 0].mean()).abs(), atol=0.5)
    assert torch.equal(proj, pca(x)[0])


def test_tsne_separates_clusters_and_lowers_its_objective() -> None:
    x, labels = clusters(n_per=25)
    y = tsne(x, perplexity=10, iterations=600)
    assert y.shape == (100, 2) and torch.isfinite(y).all()
    assert nearest_neighbour_agreement(y, labels) >= 0.97  # vs 0.25 by chance
    assert kl_divergence(x, y, perplexity=10) < kl_divergence(x, pca(x)[0], perplexity=10)
    assert torch.equal(y, tsne(x, perplexity=10, iterations=600))  # deterministic


def test_tsne_needs_points() -> None:
    with pytest.raises(ValueError, match="at least 3"):
        tsne(torch.zeros(2, 4))
