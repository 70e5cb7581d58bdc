"""Data preprocessors: move a batch to the model's device; for images, flip, normalise and pad."""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from fengine.model.utils import stack_batch
from fengine.registry import MODELS


def _is_namedtuple(data: object) -> bool:
    return isinstance(data, tuple) and hasattr(data, "_fields")


def cast_data(data: Any, device: torch.device, non_blocking: bool = False) -> Any:
    """Move every tensor (and data-sample object) in a nested batch to ``device``.

    Mappings come back as plain ``dict`` (an ``OrderedDict`` too); named tuples keep their type;
    other lists and tuples are rebuilt as their own type; ``str``, ``bytes`` and ``None`` are
    returned as they are. Tensors, and any other object with a ``to`` method (MMEngine-style data
    samples), are moved with ``.to(device, non_blocking=...)``. Anything else (numbers, numpy
    arrays) is returned unchanged, not converted. The input is not modified.

    Args:
        data: the batch.
        device: the target device.
        non_blocking: passed to ``.to``.

    Returns:
        The cast batch.
    """
    # Tensors and plain lists/tuples first: they are what batches are made of, and the abstract
    # Mapping/Sequence checks below cost more than the move itself.
    if isinstance(data, Tensor):
        return data.to(device, non_blocking=non_blocking)
    if type(data) is list or type(data) is tuple:
        return type(data)(cast_data(item, device, non_blocking) for item in data)
    if isinstance(data, Mapping):
        return {key: cast_data(value, device, non_blocking) for key, value in data.items()}
    if isinstance(data, str | bytes) or data is None:
        return data
    if _is_namedtuple(data):
        return type(data)(*(cast_data(item, device, non_blocking) for item in data))
    if isinstance(data, Sequence):
        return type(data)(cast_data(item, device, non_blocking) for item in data)  # type: ignore[call-arg]
    if not isinstance(data, type) and callable(getattr(data, "to", None)):
        return data.to(device, non_blocking=non_blocking)
    return data


def target_device(*args: Any, **kwargs: Any) -> torch.device | None:
    """The device a call ``module.to(*args, **kwargs)`` moves to, or ``None`` for a dtype-only call."""
    device = torch._C._nn._parse_to(*args, **kwargs)[0]
    return None if device is None else torch.device(device)


def cuda_device(device: int | torch.device | None) -> torch.device:
    """The device ``module.cuda(device)`` moves to (no index: the current CUDA device)."""
    if device is None:
        return torch.device("cuda")
    return torch.device("cuda", device) if isinstance(device, int) else torch.device(device)


@MODELS.register_module()
class BaseDataPreprocessor(nn.Module):
    """Moves a batch to the device the preprocessor (and so the model) was moved to.

    ``.to(...)``, ``.cuda()`` and ``.cpu()`` record the device; :meth:`forward` casts the batch
    to it with :func:`cast_data`.

    Args:
        non_blocking: copy tensors to the device asynchronously (with pinned memory).
    """

    def __init__(self, non_blocking: bool = False) -> None:
        super().__init__()
        self._non_blocking = non_blocking
        self._device = torch.device("cpu")

    @property
    def device(self) -> torch.device:
        """The device batches are moved to."""
        return self._device

    def cast_data(self, data: Any) -> Any:
        """``data`` with its tensors on :attr:`device` (see :func:`cast_data`)."""
        return cast_data(data, self._device, self._non_blocking)

    def forward(self, data: Any, training: bool = False) -> Any:
        """Move ``data`` to :attr:`device`.

        Args:
            data: the batch from the dataloader.
            training: whether this is a training step (unused here; subclasses may use it).

        Returns:
            The cast batch.
        """
        return self.cast_data(data)

    def to(self, *args: Any, **kwargs: Any) -> BaseDataPreprocessor:
        """``nn.Module.to``, also recording the target device."""
        device = target_device(*args, **kwargs)
        if device is not None:
            self._device = device
        return super().to(*args, **kwargs)

    def cuda(self, device: int | torch.device | None = None) -> BaseDataPreprocessor:
        """``nn.Module.cuda``, also recording the device."""
        self._device = cuda_device(device)
        return super().cuda(device)

    def cpu(self) -> BaseDataPreprocessor:
        """``nn.Module.cpu``, also recording the device."""
        self._device = torch.device("cpu")
        return super().cpu()


def _check_channels(image: Tensor, channel_dim: int, why: str) -> None:
    if image.dim() <= channel_dim or image.shape[channel_dim] != 3:
        raise ValueError(
            f"{why} needs images with 3 channels in dim {channel_dim}, got an input of shape "
            f"{tuple(image.shape)}"
        )


def preprocess_images(
    inputs: Tensor | Sequence[Tensor],
    mean: Tensor | None = None,
    std: Tensor | None = None,
    channel_flip: bool = False,
    pad_size_divisor: int = 1,
    pad_value: float = 0,
) -> Tensor:
    """Flip channels, convert to float, normalise, then pad: ImgDataPreprocessor's computation.

    Per image: reverse the channel order (``[2, 1, 0]``) when ``channel_flip``, ``.float()``,
    ``(x - mean) / std`` when ``mean`` is given; then pad right/bottom with ``pad_value`` up to
    multiples of ``pad_size_divisor`` (a list of images via :func:`stack_batch`; a 4-D batch in
    its last two dims). Padding comes last, so padded pixels equal ``pad_value`` literally. Pure.

    Args:
        inputs: a list of (C, H, W) images (sizes may differ) or a (N, C, H, W) batch.
        mean: shape (C, 1, 1) with C 1 or 3, or ``None`` for no normalisation (with ``std``).
        std: like ``mean``.
        channel_flip: swap BGR and RGB (needs 3 channels).
        pad_size_divisor: pad to multiples of this; 0 or 1 pads only to the largest image.
        pad_value: the padding value.

    Returns:
        A float (N, C, H', W') batch.

    Raises:
        TypeError: ``inputs`` neither a tensor nor a list/tuple of tensors.
        ValueError: a batch tensor that is not 4-D, or a flip/3-value mean or std on images that
            do not have 3 channels.
    """
    three = mean is not None and std is not None and 3 in (mean.shape[0], std.shape[0])

    def prepare(image: Tensor, channel_dim: int) -> Tensor:
        if channel_flip:
            _check_channels(image, channel_dim, "bgr_to_rgb/rgb_to_bgr")
            image = image.flip(channel_dim)
        image = image.float()
        if mean is not None and std is not None:
            if three:
                _check_channels(image, channel_dim, "a mean/std with 3 values")
            image = (image - mean) / std
        return image

    if isinstance(inputs, Tensor):
        if inputs.dim() != 4:
            raise ValueError(
                f"a batch tensor of images must be 4-D (N, C, H, W), got shape {tuple(inputs.shape)}; "
                "pass a list of (C, H, W) images instead"
            )
        batch = prepare(inputs, 1)
        height, width = batch.shape[2:]
        step = max(pad_size_divisor, 1)
        pad_h, pad_w = (
            math.ceil(height / step) * step - height,
            math.ceil(width / step) * step - width,
        )
        return F.pad(batch, (0, pad_w, 0, pad_h), "constant", pad_value)
    if isinstance(inputs, list | tuple) and inputs and all(isinstance(x, Tensor) for x in inputs):
        return stack_batch([prepare(image, 0) for image in inputs], pad_size_divisor, pad_value)
    raise TypeError(
        f"data['inputs'] must be a tensor or a non-empty list of tensors, got {type(inputs).__name__}: "
        f"{inputs!r:.200}"
    )


def build_batch_augments(
    augments: Sequence[Any] | None,
) -> nn.ModuleList | tuple[Callable[..., Any], ...] | None:
    """Build ``batch_augments`` configs from :data:`MODELS`; modules go in an ``nn.ModuleList``.

    Args:
        augments: configs or callables ``(inputs, data_samples) -> (inputs, data_samples)``.

    Returns:
        ``None`` for none; an ``nn.ModuleList`` when every augment is a module (so ``.to``
        moves them), else a tuple of callables.

    Raises:
        TypeError: an augment that is neither a config dict nor callable.
    """
    if not augments:
        return None
    built = [MODELS.build(aug) if isinstance(aug, Mapping) else aug for aug in augments]
    for aug in built:
        if not callable(aug):
            raise TypeError(
                f"batch_augments entries must be config dicts or callables, got {aug!r}"
            )
    return (
        nn.ModuleList(built) if all(isinstance(aug, nn.Module) for aug in built) else tuple(built)
    )


def _as_buffer(name: str, values: Sequence[float]) -> Tensor:
    if len(values) not in (1, 3):
        raise ValueError(
            f"{name} must have 1 or 3 values (one per channel, or one for all), got {list(values)!r}"
        )
    return torch.tensor(values, dtype=torch.float32).view(-1, 1, 1)


@MODELS.register_module()
class ImgDataPreprocessor(BaseDataPreprocessor):
    """Image batches: move to the device, flip channels, normalise, pad to a divisor, stack.

    ``forward`` takes ``{'inputs': <list of (C, H, W) images or an (N, C, H, W) tensor>,
    'data_samples': ...}`` and returns a new dict whose ``inputs`` is the float batch of
    :func:`preprocess_images` and whose ``data_samples`` is ``None`` when absent. During training
    each of ``batch_augments`` then maps ``(inputs, data_samples)`` to new ones, in order.
    ``mean``/``std`` are non-persistent buffers (absent from ``state_dict``).

    Args:
        mean: per-channel means (1 or 3 values), or ``None`` for no normalisation.
        std: per-channel standard deviations (1 or 3 values), ``None`` together with ``mean``.
        pad_size_divisor: pad height and width to multiples of this.
        pad_value: the value of padded pixels (after normalisation).
        bgr_to_rgb: reverse the channel order.
        rgb_to_bgr: reverse the channel order (the same operation; set at most one).
        non_blocking: copy to the device asynchronously.
        batch_augments: configs (built from ``MODELS``) or callables
            ``(inputs, data_samples) -> (inputs, data_samples)`` applied when ``training``.

    Raises:
        ValueError: both flips, one of ``mean``/``std`` without the other, a length other than
            1 or 3, or a negative divisor.
    """

    mean: Tensor
    std: Tensor

    def __init__(
        self,
        mean: Sequence[float] | None = None,
        std: Sequence[float] | None = None,
        pad_size_divisor: int = 1,
        pad_value: float = 0,
        bgr_to_rgb: bool = False,
        rgb_to_bgr: bool = False,
        non_blocking: bool = False,
        batch_augments: Sequence[Any] | None = None,
    ) -> None:
        super().__init__(non_blocking)
        if bgr_to_rgb and rgb_to_bgr:
            raise ValueError(
                "`bgr_to_rgb` and `rgb_to_bgr` cannot both be True (they are the same flip)"
            )
        if (mean is None) != (std is None):
            raise ValueError(
                f"mean and std should be both None or both sequences, got mean={mean!r}, std={std!r}"
            )
        if pad_size_divisor < 0:
            raise ValueError(f"pad_size_divisor must be >= 0, got {pad_size_divisor}")
        self._enable_normalize = mean is not None
        if mean is not None and std is not None:
            self.register_buffer("mean", _as_buffer("mean", mean), persistent=False)
            self.register_buffer("std", _as_buffer("std", std), persistent=False)
        self._channel_conversion = bgr_to_rgb or rgb_to_bgr
        self.pad_size_divisor = pad_size_divisor
        self.pad_value = pad_value
        self.batch_augments = build_batch_augments(batch_augments)

    def forward(self, data: Any, training: bool = False) -> dict[str, Any]:
        """Preprocess a batch dict (see the class docstring).

        Args:
            data: ``{'inputs': ..., 'data_samples': ...}`` from the dataloader.
            training: apply ``batch_augments``.

        Returns:
            A new dict with the float ``inputs`` batch on :attr:`device`.

        Raises:
            TypeError: ``data`` is not a dict, or its ``inputs`` is not a tensor or a list of
                tensors.
            KeyError: no ``'inputs'`` key.
        """
        if not isinstance(data, Mapping):
            raise TypeError(
                f"ImgDataPreprocessor expects a dict with 'inputs', got {type(data).__name__}"
            )
        if "inputs" not in data:
            raise KeyError(
                f"ImgDataPreprocessor expects a dict with an 'inputs' key, got keys {list(data)}"
            )
        cast: dict[str, Any] = self.cast_data(data)
        mean, std = (self.mean, self.std) if self._enable_normalize else (None, None)
        inputs = preprocess_images(
            cast["inputs"],
            mean,
            std,
            self._channel_conversion,
            self.pad_size_divisor,
            self.pad_value,
        )
        data_samples = cast.get("data_samples")
        if training and self.batch_augments is not None:
            for augment in self.batch_augments:
                inputs, data_samples = augment(inputs, data_samples)
        cast["inputs"] = inputs
        cast["data_samples"] = data_samples
        return cast
