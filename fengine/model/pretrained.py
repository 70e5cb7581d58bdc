"""``Pretrained`` initialisation: copy weights from a local checkpoint file into a module."""

from __future__ import annotations

import logging
import pickle
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any, cast

from torch import Tensor, nn

from fengine.core import plain
from fengine.model.init_info import INIT_INFO_ATTR, update_init_info
from fengine.model.wrappers.utils import is_model_wrapper
from fengine.registry import WEIGHT_INITIALIZERS

logger = logging.getLogger("fengine")


def read_state_dict(checkpoint: str | Path, map_location: Any = "cpu") -> dict[str, Tensor]:
    """The weights stored in a checkpoint file: its ``state_dict`` entry, or the whole file.

    Read with :func:`fengine.core.plain.load` (``torch.load(weights_only=True)``, registered
    records only), so loading a file cannot run code.

    Args:
        checkpoint: a local ``.pth`` file.
        map_location: where to put the tensors (``torch.load``'s argument).

    Returns:
        Parameter/buffer name → tensor.

    Raises:
        FileNotFoundError: no such file.
        ValueError: the file holds pickled objects other than tensors and plain containers.
        UntrustedCheckpointError: the file names a type that is not registered.
        TypeError: the weights are not a mapping.
    """
    try:
        loaded = plain.load(checkpoint, map_location=map_location)
    except pickle.UnpicklingError as error:
        raise ValueError(
            f"checkpoint {str(checkpoint)!r} cannot be read with weights_only=True (it holds "
            f"objects other than tensors and plain containers): {error}"
        ) from None
    state = loaded.get("state_dict", loaded) if isinstance(loaded, Mapping) else loaded
    if not isinstance(state, Mapping):
        raise TypeError(
            f"checkpoint {str(checkpoint)!r} holds a {type(state).__name__}, expected a dict of "
            "tensors or a dict with a 'state_dict' entry"
        )
    return dict(state)


def select_prefix(state_dict: Mapping[str, Tensor], prefix: str) -> dict[str, Tensor]:
    """The entries under ``prefix`` (``'backbone'`` or ``'backbone.'``), with the prefix removed.

    Args:
        state_dict: name → tensor.
        prefix: the submodule path to keep.

    Returns:
        A new dict; the input is not modified.

    Raises:
        KeyError: no key starts with the prefix (the message lists a few top-level names).
    """
    dotted = prefix if prefix.endswith(".") else prefix + "."
    selected = {
        key[len(dotted) :]: value for key, value in state_dict.items() if key.startswith(dotted)
    }
    if not selected:
        tops = sorted({key.split(".", 1)[0] for key in state_dict})[:10]
        raise KeyError(
            f"prefix {prefix!r} is not in the pretrained model; its top-level names: {tops}"
        )
    return selected


def load_weights(module: nn.Module, state_dict: Mapping[str, Tensor]) -> None:
    """Copy matching entries into ``module`` non-strictly, as MMEngine's loader does.

    Entries whose shape differs from the module's are skipped; missing keys (other than
    ``num_batches_tracked``), unexpected keys and skipped shapes are logged as one warning.

    Args:
        module: the module to load into (a registered wrapper is loaded through ``.module``).
        state_dict: name → tensor.
    """
    if is_model_wrapper(module):
        module = cast(nn.Module, module.module)
    own = module.state_dict()
    mismatched = [
        f"{key}: checkpoint {tuple(value.shape)} vs model {tuple(own[key].shape)}"
        for key, value in state_dict.items()
        if key in own and own[key].shape != value.shape
    ]
    usable = {k: v for k, v in state_dict.items() if k not in own or own[k].shape == v.shape}
    result = module.load_state_dict(usable, strict=False)
    missing = [key for key in result.missing_keys if "num_batches_tracked" not in key]
    problems = []
    if result.unexpected_keys:
        problems.append(f"unexpected key in source state_dict: {', '.join(result.unexpected_keys)}")
    if missing:
        problems.append(f"missing keys in source state_dict: {', '.join(missing)}")
    if mismatched:
        problems.append(f"size mismatch (not loaded): {'; '.join(mismatched)}")
    if problems:
        logger.warning("\n".join(problems))


@WEIGHT_INITIALIZERS.register_module(name="Pretrained")
class PretrainedInit:
    """Load weights from a local checkpoint; applied after every other initialiser.

    Args:
        checkpoint: the checkpoint file.
        prefix: load only the entries under this submodule path, with the path removed (e.g.
            ``'backbone.'`` to initialise a backbone from a whole detector's checkpoint).
            Without it, a leading ``module.`` (left by DDP) is removed from every key.
        map_location: ``torch.load``'s ``map_location``.
    """

    def __init__(
        self, checkpoint: str | Path, prefix: str | None = None, map_location: Any = "cpu"
    ) -> None:
        self.checkpoint = checkpoint
        self.prefix = prefix
        self.map_location = map_location
        self.wholemodule = False

    def __call__(self, module: nn.Module) -> None:
        """Load the checkpoint into ``module`` and record the init info."""
        state = read_state_dict(self.checkpoint, self.map_location)
        if self.prefix is None:
            logger.info(f"load model from: {self.checkpoint}")
            state = {re.sub(r"^module\.", "", key): value for key, value in state.items()}
        else:
            logger.info(f"load {self.prefix} in model from: {self.checkpoint}")
            state = select_prefix(state, self.prefix)
        load_weights(module, state)
        if INIT_INFO_ATTR in module.__dict__:
            update_init_info(module, init_info=self._get_init_info())

    def _get_init_info(self) -> str:
        return f"{type(self).__name__}: load from {self.checkpoint}"
