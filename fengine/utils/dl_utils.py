"""The torch version string, at MMEngine's ``mmengine.utils.dl_utils.TORCH_VERSION``."""

from __future__ import annotations

import torch

#: ``torch.__version__`` as a plain string (e.g. ``'2.13.0+cpu'``).
TORCH_VERSION: str = str(torch.__version__)

__all__ = ["TORCH_VERSION"]
