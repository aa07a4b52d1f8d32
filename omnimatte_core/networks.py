"""Small convolutional U-Nets that predict one RGBA layer per object — all objects in one module.

Each object has its own independent U-Net (the layers are independent problems), but they run as one network: every
convolution is *grouped* with one group per object, so N objects cost one kernel launch per layer instead of N, and
one optimiser steps them all.
"""
from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F


class GroupedConv(nn.Module):
    """3×3 (or 1×1) convolution of ``groups`` independent networks, ``[B, G·c_in, H, W] → [B, G·c_out, H', W']``."""

    def __init__(self, groups: int, c_in: int, c_out: int, kernel: int = 3, stride: int = 1, act: bool = True):
        super().__init__()
        self.conv = nn.Conv2d(groups * c_in, groups * c_out, kernel, stride=stride, padding=kernel // 2,
                              groups=groups, padding_mode="replicate" if kernel > 1 else "zeros")
        self.act = act

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.conv(x)
        return F.leaky_relu(x, 0.1) if self.act else x


def _interleave(groups: int, *tensors: torch.Tensor) -> torch.Tensor:
    """Concatenate per-group channel blocks so each group sees its own channels: [B,G·a], [B,G·b] → [B,G·(a+b)]."""
    b, _, h, w = tensors[0].shape
    parts = [t.reshape(b, groups, -1, h, w) for t in tensors]
    return torch.cat(parts, dim=2).reshape(b, -1, h, w)


class LayerUNet(nn.Module):
    """``groups`` independent 3-level U-Nets.

    Input  ``[B, G·in_channels, H, W]`` (per object: its features, grouped object by object).
    Output ``[B, G·out_channels, H, W]`` (per object: unbounded residuals; the caller maps them to RGB and alpha).
    The output convolution starts at zero, so a fresh network predicts exactly the caller's initial layer.
    """

    def __init__(self, groups: int, in_channels: int, out_channels: int = 4, width: int = 16):
        super().__init__()
        g, w = groups, width
        self.groups = groups
        self.enc0 = nn.Sequential(GroupedConv(g, in_channels, w), GroupedConv(g, w, w))
        self.enc1 = nn.Sequential(GroupedConv(g, w, 2 * w, stride=2), GroupedConv(g, 2 * w, 2 * w))
        self.enc2 = nn.Sequential(GroupedConv(g, 2 * w, 4 * w, stride=2), GroupedConv(g, 4 * w, 4 * w))
        self.up1 = GroupedConv(g, 4 * w, 2 * w)
        self.dec1 = GroupedConv(g, 4 * w, 2 * w)
        self.up0 = GroupedConv(g, 2 * w, w)
        self.dec0 = GroupedConv(g, 2 * w, w)
        self.head = GroupedConv(g, w, out_channels, kernel=1, act=False)
        nn.init.zeros_(self.head.conv.weight)
        nn.init.zeros_(self.head.conv.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h, w = x.shape[-2:]
        if h % 4 or w % 4:
            # The two stride-2 levels need sizes divisible by 4: pad by replication and crop back.
            x = F.pad(x, (0, (-w) % 4, 0, (-h) % 4), mode="replicate")
        e0 = self.enc0(x)
        e1 = self.enc1(e0)
        e2 = self.enc2(e1)
        d1 = self.up1(F.interpolate(e2, scale_factor=2.0, mode="bilinear", align_corners=False))
        d1 = self.dec1(_interleave(self.groups, d1, e1))
        d0 = self.up0(F.interpolate(d1, scale_factor=2.0, mode="bilinear", align_corners=False))
        d0 = self.dec0(_interleave(self.groups, d0, e0))
        return self.head(d0)[..., :h, :w]
