"""Batched training augmentation on glyph tensors (no Django).

Everything happens on whole batches with ``affine_grid``/``grid_sample`` and
pooling, so augmenting costs a fraction of a training step. Letters have about
300 real images each here, so varied writing matters more than for MNIST.
"""

import math

import torch
import torch.nn.functional as F


def _uniform(generator: torch.Generator, n: int, low: float, high: float) -> torch.Tensor:
    return torch.rand(n, generator=generator) * (high - low) + low


def augment_batch(
    x: torch.Tensor, generator: torch.Generator, strength: float = 1.0
) -> torch.Tensor:
    """Randomly rotate, scale, shear, shift, warp, thicken or thin each glyph (N, 1, 28, 28)."""
    n = x.shape[0]
    if n == 0 or strength <= 0:
        return x
    angle = _uniform(generator, n, -12, 12) * strength * math.pi / 180
    scale = 1 + _uniform(generator, n, -0.15, 0.12) * strength
    aspect = 1 + _uniform(generator, n, -0.12, 0.12) * strength
    shear = _uniform(generator, n, -0.25, 0.25) * strength
    shift = _uniform(generator, 2 * n, -0.12, 0.12).view(n, 2) * strength  # about 1.7 px
    cos, sin = torch.cos(angle), torch.sin(angle)
    # The sampling grid maps output to input coordinates: divide by the scale.
    sx, sy = 1 / (scale * aspect), aspect / scale
    theta = torch.stack(
        [
            torch.stack([cos * sx, (-sin + shear) * sx, shift[:, 0]], dim=1),
            torch.stack([sin * sy, cos * sy, shift[:, 1]], dim=1),
        ],
        dim=1,
    )
    grid = F.affine_grid(theta, list(x.shape), align_corners=False)
    # Elastic: a smooth random displacement field, upsampled from a coarse one.
    coarse = (torch.rand(n, 2, 4, 4, generator=generator) * 2 - 1) * 0.06 * strength
    field = F.interpolate(coarse, size=x.shape[-2:], mode="bicubic", align_corners=False)
    grid = grid + field.permute(0, 2, 3, 1)
    out = F.grid_sample(x, grid, mode="bilinear", padding_mode="zeros", align_corners=False)
    # Stroke width: dilate some glyphs, erode a few others.
    choice = torch.rand(n, generator=generator)
    thicker = (choice < 0.25 * strength).view(n, 1, 1, 1)
    thinner = (choice > 1 - 0.15 * strength).view(n, 1, 1, 1)
    dilated = F.max_pool2d(out, 3, stride=1, padding=1)
    eroded = -F.max_pool2d(-out, 3, stride=1, padding=1)
    out = torch.where(thicker, 0.5 * (out + dilated), out)
    out = torch.where(thinner & (eroded.flatten(1).amax(1) > 0.3).view(n, 1, 1, 1), eroded, out)
    return out.clamp_(0, 1)
