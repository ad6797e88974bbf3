"""A user's own network for the ``module:`` source tests: a conv stem, then tokens."""

from __future__ import annotations

import torch
from torch import nn


class ToTokens(nn.Module):
    """B x C x H x W -> B x (H*W) x C: a token output with no class token."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x.flatten(2).transpose(1, 2)


class TinyNet(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.stem = nn.Conv2d(3, 6, kernel_size=4, stride=4)
        self.tokens = ToTokens()
        self.mix = nn.Linear(6, 6)
        self.head = nn.Linear(6, 5)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        t = self.mix(self.tokens(self.stem(x)))
        return self.head(t.mean(dim=1))


def tiny_net() -> nn.Module:
    torch.manual_seed(3)
    return TinyNet()
