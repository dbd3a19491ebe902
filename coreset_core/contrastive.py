"""SimCLR and MoCo v2 as two variants of one contrastive skeleton.

Both map two views of a batch to a loss and to each example's similarity: the
cosine between the projections of its two views. That similarity, recorded every
epoch, is what coreset selection scores (Ju et al. 2022, section III).
"""

from __future__ import annotations

import copy

import torch
import torch.nn.functional as F
from torch import nn

from coreset_core.backbones import ProjectionHead, ResNet
from coreset_core.losses import info_nce, nt_xent


class ContrastiveModel(nn.Module):
    """A backbone and projection head trained on pairs of views."""

    def __init__(
        self, backbone: ResNet, projection_dim: int, temperature: float
    ) -> None:
        super().__init__()
        self.backbone = backbone
        self.projection_head = ProjectionHead(backbone.embedding_dim, projection_dim)
        self.temperature = temperature

    def project(self, views: torch.Tensor) -> torch.Tensor:
        return self.projection_head(self.backbone(views))

    def forward(
        self, views_a: torch.Tensor, views_b: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Return the loss and the similarity (B,) of each example's two views."""
        raise NotImplementedError


class SimCLR(ContrastiveModel):
    """SimCLR (Chen et al. 2020): both views through the same network, NT-Xent."""

    def forward(
        self, views_a: torch.Tensor, views_b: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        # One forward pass for both views keeps batch norm statistics shared.
        projections = self.project(torch.cat([views_a, views_b])).float()
        projections_a, projections_b = projections.chunk(2)
        loss = nt_xent(projections_a, projections_b, self.temperature)
        similarity = F.cosine_similarity(projections_a, projections_b, dim=1)
        return loss, similarity.detach()


class MoCo(ContrastiveModel):
    """MoCo v2 (Chen et al. 2020b): queries from the encoder, keys from a momentum copy.

    momentum: 0.99, the MoCo CIFAR-10 setting (0.999 suits ImageNet's longer runs).
    queue_size: 4096 keys of earlier batches serve as negatives.
    temperature: 0.2, as in MoCo v2.
    """

    queue: torch.Tensor
    queue_pointer: torch.Tensor

    def __init__(
        self,
        backbone: ResNet,
        projection_dim: int,
        temperature: float = 0.2,
        momentum: float = 0.99,
        queue_size: int = 4096,
    ) -> None:
        super().__init__(backbone, projection_dim, temperature)
        self.momentum = momentum
        self.momentum_encoder = nn.Sequential(
            copy.deepcopy(self.backbone), copy.deepcopy(self.projection_head)
        )
        for parameter in self.momentum_encoder.parameters():
            parameter.requires_grad_(False)

        # queue: K x D keys, filled with random unit vectors until real keys arrive.
        queue = F.normalize(torch.randn(queue_size, projection_dim), dim=1)
        self.register_buffer("queue", queue)
        self.register_buffer("queue_pointer", torch.zeros((), dtype=torch.long))

    @torch.no_grad()
    def update_momentum_encoder(self) -> None:
        """key_params = momentum * key_params + (1 - momentum) * query_params."""
        online = [*self.backbone.parameters(), *self.projection_head.parameters()]
        for key_param, query_param in zip(self.momentum_encoder.parameters(), online):
            key_param.mul_(self.momentum).add_(
                query_param.detach(), alpha=1 - self.momentum
            )

    @torch.no_grad()
    def enqueue(self, keys: torch.Tensor) -> None:
        """Replace the oldest keys in the queue by this batch's keys (B, D)."""
        k = self.queue.shape[0]
        slots = (
            self.queue_pointer + torch.arange(keys.shape[0], device=keys.device)
        ) % k
        self.queue[slots] = keys.to(self.queue.dtype)
        self.queue_pointer.copy_((self.queue_pointer + keys.shape[0]) % k)

    def forward(
        self, views_a: torch.Tensor, views_b: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        queries = F.normalize(self.project(views_a).float(), dim=1)

        # Keys come from the momentum encoder, updated before it encodes them.
        with torch.no_grad():
            self.update_momentum_encoder()
            keys = F.normalize(self.momentum_encoder(views_b).float(), dim=1)

        loss = info_nce(queries, keys, self.queue.clone(), self.temperature)
        self.enqueue(keys)
        similarity = (queries.detach() * keys).sum(dim=1)
        return loss, similarity


def build_model(
    method: str,
    backbone: ResNet,
    projection_dim: int,
    temperature: float,
    momentum: float,
    queue_size: int,
) -> ContrastiveModel:
    if method == "simclr":
        return SimCLR(backbone, projection_dim, temperature)
    if method == "moco":
        return MoCo(backbone, projection_dim, temperature, momentum, queue_size)
    raise ValueError(f"unknown method {method!r}; choose simclr or moco")
