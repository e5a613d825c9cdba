"""The demo store's small CNN, importable from the installed package.

Why it lives in cxql: the demo store (stores/digits, shipped in the wheel)
attaches this model (see :mod:`cxql.model`), so ABLATE and the class
analyses must rebuild it without the repository's ``examples/`` folder. The
weights live in the store itself; ``examples/digits_model.py`` re-exports
this class and keeps the training-side helpers.
"""

from __future__ import annotations

import torch
from torch import nn


class DigitsCNN(nn.Module):
    """conv1 (8 @ 16x16) -> pool -> conv2 (16 @ 8x8) -> pool -> fc (32) -> 10 logits; BatchNorm + ReLU each.

    BatchNorm keeps every unit alive (without it a third of fc died in
    training, and a dead unit explains nothing).
    """

    def __init__(self) -> None:
        super().__init__()
        self.conv1 = nn.Sequential(nn.Conv2d(1, 8, 3, padding=1), nn.BatchNorm2d(8), nn.ReLU())
        self.conv2 = nn.Sequential(nn.Conv2d(8, 16, 3, padding=1), nn.BatchNorm2d(16), nn.ReLU())
        self.fc = nn.Sequential(nn.Linear(16 * 4 * 4, 32), nn.BatchNorm1d(32), nn.ReLU())
        self.out = nn.Linear(32, 10)

    def layers(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        """Every recorded layer's activations (after ReLU) and the logits, for x [B, 1, 16, 16]."""
        conv1 = self.conv1(x)
        conv2 = self.conv2(nn.functional.max_pool2d(conv1, 2))
        fc = self.fc(nn.functional.max_pool2d(conv2, 2).flatten(1))
        return {"conv1": conv1, "conv2": conv2, "fc": fc, "logits": self.out(fc)}

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.layers(x)["logits"]


def untrained() -> DigitsCNN:
    """A fresh DigitsCNN in eval mode: the factory the demo store names; its weights come from the store."""
    return DigitsCNN().eval()
