"""Stand-ins for what MMEngine's tutorials download or take from torchvision.

``CIFAR10`` gives CIFAR-10-shaped samples (a ``3x32x32`` float image and a label of 10 classes)
drawn once from a fixed seed: each class is a smooth random pattern plus noise, so a small network
learns it in a few iterations. ``resnet50()`` is a small convolutional network with ResNet-50's
interface (``(N, 3, 32, 32)`` images in, ``(N, 10)`` scores out), since torchvision is not a
dependency. Nothing is downloaded.
"""

from __future__ import annotations

import os
import sys
import tempfile

import torch
from torch import nn
from torch.utils.data import Dataset

NUM_CLASSES = 10


class CIFAR10(Dataset):
    """A synthetic CIFAR-10: ``size`` samples ``(image, label)``, the same for the same ``seed``."""

    def __init__(self, root: str = "data/cifar10", train: bool = True, size: int | None = None,
                 seed: int = 0, **kwargs: object) -> None:
        size = size if size is not None else (256 if train else 128)
        generator = torch.Generator().manual_seed(seed)
        patterns = torch.nn.functional.interpolate(
            torch.rand(NUM_CLASSES, 3, 4, 4, generator=generator), size=32, mode="bilinear"
        )
        generator.manual_seed(seed + (1 if train else 2))
        self.labels = torch.randint(0, NUM_CLASSES, (size,), generator=generator)
        noise = 0.5 * torch.randn(size, 3, 32, 32, generator=generator)
        self.images = 4 * (patterns[self.labels] - 0.5) + noise

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, torch.Tensor]:
        return self.images[index], self.labels[index]


def resnet50() -> nn.Module:
    """A small CNN in ResNet-50's place: ``(N, 3, 32, 32)`` -> ``(N, 10)``."""
    return nn.Sequential(
        nn.Conv2d(3, 8, 3, stride=2, padding=1),
        nn.BatchNorm2d(8),
        nn.ReLU(),
        nn.Conv2d(8, 16, 3, stride=2, padding=1),
        nn.ReLU(),
        nn.AdaptiveAvgPool2d(1),
        nn.Flatten(),
        nn.Linear(16, NUM_CLASSES),
    )


def enter_work_folder() -> str:
    """``cd`` into ``sys.argv[1]`` (created if needed) or a fresh temporary folder; returns it.

    Also seeds torch's global generator (models built before the Runner draw from it).
    """
    folder = sys.argv[1] if len(sys.argv) > 1 else tempfile.mkdtemp(prefix="tutorial_")
    os.makedirs(folder, exist_ok=True)
    os.chdir(folder)
    torch.set_num_threads(1)  # tiny models: a second thread only costs on a busy machine
    torch.manual_seed(0)
    return folder
