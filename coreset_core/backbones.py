"""CIFAR-style ResNets: the backbones that selection and retraining share.

The ImageNet ResNet stem (7x7 stride-2 convolution and a max-pool) throws away
three quarters of a 32x32 image before the first block, so every network here
starts with a 3x3 stride-1 convolution and no max-pool, as in He et al. 2016,
section 4.2, and in the authors' SimCLR code for CIFAR.
"""

from __future__ import annotations

import torch
from torch import nn

BACKBONES = ("resnet20", "resnet18", "resnet101")


class BasicBlock(nn.Module):
    """Two 3x3 convolutions with an identity (or 1x1 projection) shortcut."""

    expansion = 1

    def __init__(self, in_planes: int, planes: int, stride: int = 1) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(in_planes, planes, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(planes)
        self.conv2 = nn.Conv2d(planes, planes, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.shortcut = _shortcut(in_planes, planes, stride)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = torch.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return torch.relu(out + self.shortcut(x))


class Bottleneck(nn.Module):
    """1x1 reduce, 3x3, 1x1 expand (x4), as in ResNet-50 and deeper."""

    expansion = 4

    def __init__(self, in_planes: int, planes: int, stride: int = 1) -> None:
        super().__init__()
        out_planes = planes * self.expansion
        self.conv1 = nn.Conv2d(in_planes, planes, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(planes)
        self.conv2 = nn.Conv2d(planes, planes, 3, stride, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.conv3 = nn.Conv2d(planes, out_planes, 1, bias=False)
        self.bn3 = nn.BatchNorm2d(out_planes)
        self.shortcut = _shortcut(in_planes, out_planes, stride)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = torch.relu(self.bn1(self.conv1(x)))
        out = torch.relu(self.bn2(self.conv2(out)))
        out = self.bn3(self.conv3(out))
        return torch.relu(out + self.shortcut(x))


def _shortcut(in_planes: int, out_planes: int, stride: int) -> nn.Module:
    if stride == 1 and in_planes == out_planes:
        return nn.Identity()
    return nn.Sequential(
        nn.Conv2d(in_planes, out_planes, 1, stride, bias=False),
        nn.BatchNorm2d(out_planes),
    )


class ResNet(nn.Module):
    """A ResNet body that maps images (B, C, H, W) to embeddings (B, embedding_dim)."""

    def __init__(
        self,
        block: type[BasicBlock] | type[Bottleneck],
        blocks_per_stage: list[int],
        widths: list[int],
        in_channels: int = 3,
    ) -> None:
        super().__init__()
        self.stem = nn.Sequential(
            nn.Conv2d(in_channels, widths[0], 3, 1, 1, bias=False),
            nn.BatchNorm2d(widths[0]),
            nn.ReLU(inplace=True),
        )

        # Each stage after the first halves the resolution.
        stages: list[nn.Module] = []
        in_planes = widths[0]
        for i, (n_blocks, planes) in enumerate(zip(blocks_per_stage, widths)):
            stride = 1 if i == 0 else 2
            layers: list[nn.Module] = []
            for j in range(n_blocks):
                layers.append(block(in_planes, planes, stride if j == 0 else 1))
                in_planes = planes * block.expansion
            stages.append(nn.Sequential(*layers))
        self.stages = nn.Sequential(*stages)
        self.embedding_dim = in_planes

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.stages(self.stem(x))
        return torch.flatten(nn.functional.adaptive_avg_pool2d(x, 1), 1)


def build_backbone(name: str, in_channels: int = 3) -> ResNet:
    """Build a backbone by name: resnet20 (0.27M parameters), resnet18 or resnet101.

    resnet20 is the CIFAR ResNet of He et al. 2016 (three stages of 16, 32 and 64
    channels); it is the one that trains in minutes on a laptop CPU. resnet18 and
    resnet101 are the paper's selection and cross-architecture networks.
    """
    if name == "resnet20":
        return ResNet(BasicBlock, [3, 3, 3], [16, 32, 64], in_channels)
    if name == "resnet18":
        return ResNet(BasicBlock, [2, 2, 2, 2], [64, 128, 256, 512], in_channels)
    if name == "resnet101":
        return ResNet(Bottleneck, [3, 4, 23, 3], [64, 128, 256, 512], in_channels)
    raise ValueError(f"unknown backbone {name!r}; choose one of {', '.join(BACKBONES)}")


class ProjectionHead(nn.Module):
    """SimCLR's 2-layer MLP (Chen et al. 2020): embeddings in, projections out."""

    def __init__(self, embedding_dim: int, projection_dim: int = 128) -> None:
        super().__init__()
        self.net = nn.Sequential(
            nn.Linear(embedding_dim, embedding_dim),
            nn.ReLU(inplace=True),
            nn.Linear(embedding_dim, projection_dim),
        )

    def forward(self, embeddings: torch.Tensor) -> torch.Tensor:
        return self.net(embeddings)


class Classifier(nn.Module):
    """A backbone with a linear layer on top: the target model of retraining."""

    def __init__(self, backbone: ResNet, num_classes: int) -> None:
        super().__init__()
        self.backbone = backbone
        self.fc = nn.Linear(backbone.embedding_dim, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(self.backbone(x))
