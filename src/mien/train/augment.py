"""Batched augmentation on tensors (no per-image Python loop, so two cores go to training).

Geometric jitter (rotation, scale, shift, mirror with blendshapes mirrored too), brightness,
contrast and gamma, occasional blur, and random occluding patches (hands, masks, glasses).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F


def augment(images: torch.Tensor, blend: torch.Tensor, mirror: torch.Tensor,
            generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    """Augment (B, C, H, W) images in [0, 1] and their (B, 53) blendshapes+flag (random numbers from `generator`,
    which lives on the images' device)."""
    b = images.shape[0]
    g = generator

    def uniform(lo: float, hi: float) -> torch.Tensor:
        return torch.rand(b, generator=g, device=g.device) * (hi - lo) + lo

    angle = uniform(-15, 15) * math.pi / 180
    scale = uniform(0.85, 1.15)
    flip = torch.rand(b, generator=g, device=g.device) < 0.5
    sx = torch.where(flip, -1.0, 1.0)
    cos, sin = torch.cos(angle) / scale, torch.sin(angle) / scale
    theta = torch.stack([
        torch.stack([cos * sx, -sin, uniform(-0.1, 0.1)], 1),
        torch.stack([sin * sx, cos, uniform(-0.1, 0.1)], 1),
    ], 1)
    grid = F.affine_grid(theta, list(images.shape), align_corners=False)
    out = F.grid_sample(images, grid, mode="bilinear", padding_mode="border", align_corners=False)
    blend = torch.where(flip[:, None], blend[:, mirror], blend)

    # Photometric: contrast, brightness, gamma.
    mean = out.mean((2, 3), keepdim=True)
    out = (out - mean) * uniform(0.6, 1.4).view(b, 1, 1, 1) + mean + uniform(-0.15, 0.15).view(b, 1, 1, 1)
    out = out.clamp(0, 1) ** uniform(0.7, 1.4).view(b, 1, 1, 1)

    blur = torch.rand(b, generator=g, device=g.device) < 0.2
    if blur.any():
        out[blur] = F.avg_pool2d(out[blur], 3, 1, 1, count_include_pad=False)

    out = _occlude(out, g)
    return out, blend


def _occlude(images: torch.Tensor, g: torch.Generator, p: float = 0.4) -> torch.Tensor:
    """Random erasing: a patch of 4-25% of the face, filled with flat grey or noise."""
    b, _, h, w = images.shape
    chosen = torch.rand(b, generator=g, device=g.device) < p
    area = torch.rand(b, generator=g, device=g.device) * 0.21 + 0.04
    aspect = torch.exp(torch.rand(b, generator=g, device=g.device) * 2.2 - 1.1)
    ph = (torch.sqrt(area * aspect) * h).clamp(4, h - 1).long()
    pw = (torch.sqrt(area / aspect) * w).clamp(4, w - 1).long()
    y0 = (torch.rand(b, generator=g, device=g.device) * (h - ph)).long()
    x0 = (torch.rand(b, generator=g, device=g.device) * (w - pw)).long()
    ys = torch.arange(h, device=images.device).view(1, h, 1)
    xs = torch.arange(w, device=images.device).view(1, 1, w)
    mask = ((ys >= y0.view(b, 1, 1)) & (ys < (y0 + ph).view(b, 1, 1))
            & (xs >= x0.view(b, 1, 1)) & (xs < (x0 + pw).view(b, 1, 1)) & chosen.view(b, 1, 1))
    fill = torch.where(torch.rand(b, 1, 1, generator=g, device=g.device) < 0.5,
                       torch.rand(b, 1, 1, generator=g, device=g.device).expand(b, h, w),
                       torch.rand(b, h, w, generator=g, device=g.device))
    return torch.where(mask.unsqueeze(1), fill.unsqueeze(1), images)


def mix_within_sets(images: torch.Tensor, blend: torch.Tensor, targets: torch.Tensor, sets: torch.Tensor,
                    weights: torch.Tensor, generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Mixup (Zhang et al. 2018) between faces of the same dataset family: face i becomes w_i * face i +
    (1 - w_i) * a random partner of its family, blendshapes and targets alike (`weights`: (B,) mixing weights,
    e.g. max(l, 1 - l) for l ~ Beta(a, a)). Within a family, because each family has its own class-prior bias and
    masked classes, which a cross-family mixture would not know which to use."""
    partner = torch.arange(len(sets), device=sets.device)
    for family in torch.unique(sets):
        members = torch.nonzero(sets == family).flatten()
        shuffled = torch.randperm(len(members), generator=generator, device=generator.device).to(members.device)
        partner[members] = members[shuffled]
    w = weights.to(images)

    def mixed(t: torch.Tensor) -> torch.Tensor:
        shape = (-1,) + (1,) * (t.dim() - 1)
        return w.view(shape) * t + (1 - w.view(shape)) * t[partner]

    return mixed(images), mixed(blend), mixed(targets)
