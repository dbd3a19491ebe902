"""Contrastive losses, as pure functions of projections."""

from __future__ import annotations

import torch
import torch.nn.functional as F


def nt_xent(
    projections_a: torch.Tensor, projections_b: torch.Tensor, temperature: float = 0.5
) -> torch.Tensor:
    """NT-Xent, the SimCLR loss (Chen et al. 2020, eq. 1), averaged over all 2B views.

    projections_a and projections_b are (B, D): row i of each is a view of example i.
    Each view's positive is the other view of its example; the 2B - 2 views of
    the other examples are its negatives.
    """
    b = projections_a.shape[0]
    z = F.normalize(torch.cat([projections_a, projections_b]), dim=1)

    # logits: 2B x 2B cosine similarities over temperature, self-pairs masked out.
    logits = z @ z.T / temperature
    logits.fill_diagonal_(float("-inf"))

    # View i's positive sits at i + B, and view i + B's at i.
    targets = torch.cat([torch.arange(b, 2 * b), torch.arange(b)]).to(z.device)
    return F.cross_entropy(logits, targets)


def info_nce(
    queries: torch.Tensor,
    keys: torch.Tensor,
    queue: torch.Tensor,
    temperature: float = 0.2,
) -> torch.Tensor:
    """InfoNCE with a queue of negatives, the MoCo loss (He et al. 2020, eq. 1).

    queries and keys are (B, D) and L2-normalised; queue is (K, D), the keys of
    earlier batches. Each query's positive is its own key.
    """
    # logits: B x (1 + K), the positive first.
    positive = (queries * keys).sum(dim=1, keepdim=True)
    negative = queries @ queue.T
    logits = torch.cat([positive, negative], dim=1) / temperature
    targets = torch.zeros(queries.shape[0], dtype=torch.long, device=queries.device)
    return F.cross_entropy(logits, targets)
