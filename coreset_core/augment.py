"""Batched image augmentation on the training device.

Images stay uint8 tensors (B, C, H, W) until they reach the device; every step
below works on the whole batch at once. Per-image PIL transforms in DataLoader
workers cost more than the small networks trained here, and on a 2-core machine
there are no spare cores to hide them behind.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F


@dataclass(frozen=True)
class ViewAugmentation:
    """The SimCLR view recipe (Chen et al. 2020, appendix A) scaled for small images.

    Crop scale starts at 0.2 rather than 0.08, since a 32x32 image has too few
    pixels left at 8% of its area (as in the MoCo v2 and SimSiam CIFAR recipes).
    Colour strength 0.5 gives jitter (0.4, 0.4, 0.4, 0.1), SimCLR's CIFAR setting.
    """

    crop_scale: tuple[float, float] = (0.2, 1.0)
    crop_ratio: tuple[float, float] = (3 / 4, 4 / 3)
    flip_p: float = 0.5
    jitter_p: float = 0.8
    brightness: float = 0.4
    contrast: float = 0.4
    saturation: float = 0.4
    hue: float = 0.1
    grayscale_p: float = 0.2


def to_float(
    images: torch.Tensor, mean: torch.Tensor, std: torch.Tensor
) -> torch.Tensor:
    """Convert uint8 images (B, C, H, W) to normalised float32."""
    x = images.float().div_(255.0)
    return (x - mean.view(1, -1, 1, 1)) / std.view(1, -1, 1, 1)


def random_views(
    images: torch.Tensor,
    mean: torch.Tensor,
    std: torch.Tensor,
    generator: torch.Generator,
    recipe: ViewAugmentation = ViewAugmentation(),
) -> torch.Tensor:
    """One random view per image: uint8 (B, C, H, W) in, normalised float32 out.

    Colour steps are skipped for single-channel data, where they mean nothing.
    """
    x = images.float().div_(255.0)
    x = random_resized_crop_and_flip(x, generator, recipe)
    if x.shape[1] == 3:
        x = colour_jitter(x, generator, recipe)
        x = random_grayscale(x, generator, recipe.grayscale_p)
    return (x - mean.view(1, -1, 1, 1)) / std.view(1, -1, 1, 1)


def random_crop_and_flip(
    images: torch.Tensor, generator: torch.Generator, padding: int = 4
) -> torch.Tensor:
    """The supervised CIFAR recipe: pad by 4, crop back at random, flip half.

    Works on float images (B, C, H, W); one gather for the whole batch.
    """
    b, _, h, w = images.shape
    padded = F.pad(images, (padding,) * 4, mode="reflect")
    dy = _randint(2 * padding + 1, b, generator, images.device)
    dx = _randint(2 * padding + 1, b, generator, images.device)

    # rows: B x H, cols: B x W, offsets into the padded image.
    rows = dy[:, None] + torch.arange(h, device=images.device)
    cols = dx[:, None] + torch.arange(w, device=images.device)
    flip = _rand(b, generator, images.device) < 0.5
    cols = torch.where(flip[:, None], cols.flip(1), cols)

    batch = torch.arange(b, device=images.device)[:, None, None]
    out = padded.permute(0, 2, 3, 1)[batch, rows[:, :, None], cols[:, None, :]]
    return out.permute(0, 3, 1, 2).contiguous()


def random_resized_crop_and_flip(
    x: torch.Tensor, generator: torch.Generator, recipe: ViewAugmentation
) -> torch.Tensor:
    """Crop a random box of random area and aspect, flip half, resize back.

    Crop, flip and resize fold into one affine grid per image, so the whole batch
    is a single grid_sample call.
    """
    b, _, h, w = x.shape
    device = x.device

    # Box area and aspect ratio, as in torchvision's RandomResizedCrop.
    area = _uniform(b, *recipe.crop_scale, generator, device)
    log_ratio = _uniform(
        b,
        math.log(recipe.crop_ratio[0]),
        math.log(recipe.crop_ratio[1]),
        generator,
        device,
    )
    ratio = torch.exp(log_ratio)
    box_w = torch.sqrt(area * ratio).clamp(max=1.0)
    box_h = torch.sqrt(area / ratio).clamp(max=1.0)

    # Box centre in normalised coordinates [-1, 1], kept inside the image.
    cx = (_rand(b, generator, device) * 2 - 1) * (1 - box_w)
    cy = (_rand(b, generator, device) * 2 - 1) * (1 - box_h)
    flip = torch.where(_rand(b, generator, device) < recipe.flip_p, -1.0, 1.0)

    # theta: B x 2 x 3, mapping output coordinates to input coordinates.
    theta = torch.zeros(b, 2, 3, device=device)
    theta[:, 0, 0] = box_w * flip
    theta[:, 0, 2] = cx
    theta[:, 1, 1] = box_h
    theta[:, 1, 2] = cy
    grid = F.affine_grid(theta, [b, x.shape[1], h, w], align_corners=False)
    return F.grid_sample(
        x, grid, mode="bilinear", padding_mode="reflection", align_corners=False
    )


def colour_jitter(
    x: torch.Tensor, generator: torch.Generator, recipe: ViewAugmentation
) -> torch.Tensor:
    """Brightness, contrast, saturation and hue, applied to a random 80% of the batch.

    The order is fixed (torchvision shuffles it per image); the strengths match.
    """
    b = x.shape[0]
    device = x.device
    apply = (_rand(b, generator, device) < recipe.jitter_p).view(b, 1, 1, 1)

    def factor(strength: float) -> torch.Tensor:
        return _uniform(b, 1 - strength, 1 + strength, generator, device).view(
            b, 1, 1, 1
        )

    out = x * factor(recipe.brightness)
    mean = _luma(out).mean(dim=(2, 3), keepdim=True)
    out = (out - mean) * factor(recipe.contrast) + mean
    gray = _luma(out)
    out = (out - gray) * factor(recipe.saturation) + gray
    out = _rotate_hue(out, _uniform(b, -recipe.hue, recipe.hue, generator, device))
    out = out.clamp_(0.0, 1.0)
    return torch.where(apply, out, x)


def random_grayscale(
    x: torch.Tensor, generator: torch.Generator, p: float
) -> torch.Tensor:
    """Replace a random fraction p of the images by their luma on all three channels."""
    b = x.shape[0]
    apply = (_rand(b, generator, x.device) < p).view(b, 1, 1, 1)
    return torch.where(apply, _luma(x).expand_as(x), x)


def _luma(x: torch.Tensor) -> torch.Tensor:
    """ITU-R 601 luma (B, 1, H, W), the weights torchvision's grayscale uses."""
    r, g, b = x[:, 0:1], x[:, 1:2], x[:, 2:3]
    return 0.299 * r + 0.587 * g + 0.114 * b


def _rotate_hue(x: torch.Tensor, shift: torch.Tensor) -> torch.Tensor:
    """Rotate hue by shift (B,) turns, as a rotation about the grey axis in YIQ space.

    A rotation matrix per image is far cheaper than a round trip through HSV, and
    for the small shifts used here (at most 0.1 turn) the two agree closely.
    """
    angle = shift * 2 * math.pi
    cos, sin = torch.cos(angle), torch.sin(angle)
    rgb_to_yiq = x.new_tensor(
        [[0.299, 0.587, 0.114], [0.596, -0.274, -0.322], [0.211, -0.523, 0.312]]
    )
    yiq_to_rgb = torch.linalg.inv(rgb_to_yiq)

    # rotation: B x 3 x 3, turning the I and Q chroma axes.
    rotation = torch.zeros(x.shape[0], 3, 3, device=x.device, dtype=x.dtype)
    rotation[:, 0, 0] = 1.0
    rotation[:, 1, 1], rotation[:, 1, 2] = cos, -sin
    rotation[:, 2, 1], rotation[:, 2, 2] = sin, cos
    matrix = yiq_to_rgb @ rotation @ rgb_to_yiq
    return torch.einsum("bij,bjhw->bihw", matrix, x)


def _rand(n: int, generator: torch.Generator, device: torch.device) -> torch.Tensor:
    return torch.rand(n, generator=generator, device=generator.device).to(device)


def _uniform(
    n: int, low: float, high: float, generator: torch.Generator, device: torch.device
) -> torch.Tensor:
    return low + (high - low) * _rand(n, generator, device)


def _randint(
    high: int, n: int, generator: torch.Generator, device: torch.device
) -> torch.Tensor:
    return torch.randint(high, (n,), generator=generator, device=generator.device).to(
        device
    )
