"""``BaseModule``: an ``nn.Module`` that initialises its weights from ``init_cfg``; and containers."""

from __future__ import annotations

import copy
import logging
from collections.abc import Iterable, Mapping
from typing import Any, cast

from torch import nn

from fengine.model.init_info import INIT_INFO_ATTR, end_init_info, start_init_info, update_init_info
from fengine.model.pretrained import PretrainedInit
from fengine.model.weight_init import InitCfg, initialize
from fengine.model.wrappers.utils import is_model_wrapper

logger = logging.getLogger("fengine")


def _is_pretrained(cfg: Mapping[str, Any]) -> bool:
    kind = cfg.get("type")
    return kind == "Pretrained" or kind is PretrainedInit


class BaseModule(nn.Module):
    """An ``nn.Module`` whose ``init_weights()`` applies its ``init_cfg``, then its children's.

    ``init_weights()`` runs once per module (``is_init``; a second call only warns). It applies
    the module's own non-``Pretrained`` configs, then calls ``init_weights()`` on every direct
    child that has one and is not initialised yet (a registered wrapper without one is
    unwrapped), then applies ``Pretrained`` configs, which therefore win. A child's own
    ``init_cfg`` thus overrides its parent's for that subtree. A ``BaseModule`` inside a plain
    ``nn.Sequential``/``nn.ModuleList``/``nn.ModuleDict`` is never reached (the plain container
    has no ``init_weights``): use :class:`Sequential`, :class:`ModuleList`, :class:`ModuleDict`.

    The top-level call records which initialiser last changed each parameter and logs
    ``name - shape: <init info>`` for all of them to the ``'fengine'`` logger.

    Args:
        init_cfg: a dict or a list of dicts for :func:`~fengine.model.initialize` (deep-copied).
    """

    def __init__(self, init_cfg: InitCfg | None = None) -> None:
        super().__init__()
        self._is_init = False
        self.init_cfg = copy.deepcopy(init_cfg)

    @property
    def is_init(self) -> bool:
        """Whether ``init_weights()`` has run."""
        return self._is_init

    @is_init.setter
    def is_init(self, value: bool) -> None:
        self._is_init = value

    def init_weights(self) -> None:
        """Initialise this module and its children once (see the class docstring)."""
        table = None if INIT_INFO_ATTR in self.__dict__ else start_init_info(self)
        name = type(self).__name__
        if self._is_init:
            logger.warning(f"init_weights of {name} has been called more than once.")
        else:
            cfgs = (
                []
                if not self.init_cfg
                else [self.init_cfg]
                if isinstance(self.init_cfg, Mapping)
                else list(self.init_cfg)
            )
            if cfgs:
                logger.debug(f"initialize {name} with init_cfg {self.init_cfg}")
            pretrained = [cfg for cfg in cfgs if _is_pretrained(cfg)]
            initialize(self, [cfg for cfg in cfgs if not _is_pretrained(cfg)])
            for child in self.children():
                if is_model_wrapper(child) and not hasattr(child, "init_weights"):
                    child = cast(nn.Module, child.module)
                if hasattr(child, "init_weights") and not getattr(child, "is_init", False):
                    cast(Any, child).init_weights()
                    update_init_info(
                        child,
                        init_info=f"Initialized by user-defined `init_weights` in {type(child).__name__} ",
                    )
            if pretrained:
                initialize(self, pretrained)
            self._is_init = True
        if table is not None:
            end_init_info(self, table)

    def __repr__(self) -> str:
        text = super().__repr__()
        return f"{text}\ninit_cfg={self.init_cfg}" if self.init_cfg else text


class Sequential(BaseModule, nn.Sequential):
    """``nn.Sequential`` that takes part in ``init_weights`` (and has its own ``init_cfg``).

    Args:
        *args: the modules, in order (or one ``OrderedDict`` of them).
        init_cfg: see :class:`BaseModule`.
    """

    def __init__(self, *args: Any, init_cfg: InitCfg | None = None) -> None:
        BaseModule.__init__(self, init_cfg)
        nn.Sequential.__init__(self, *args)


class ModuleList(BaseModule, nn.ModuleList):
    """``nn.ModuleList`` that takes part in ``init_weights`` (and has its own ``init_cfg``).

    Args:
        modules: the modules.
        init_cfg: see :class:`BaseModule`.
    """

    def __init__(
        self, modules: Iterable[nn.Module] | None = None, init_cfg: InitCfg | None = None
    ) -> None:
        BaseModule.__init__(self, init_cfg)
        nn.ModuleList.__init__(self, modules)


class ModuleDict(BaseModule, nn.ModuleDict):
    """``nn.ModuleDict`` that takes part in ``init_weights`` (and has its own ``init_cfg``).

    Args:
        modules: name → module.
        init_cfg: see :class:`BaseModule`.
    """

    def __init__(
        self, modules: Mapping[str, nn.Module] | None = None, init_cfg: InitCfg | None = None
    ) -> None:
        BaseModule.__init__(self, init_cfg)
        nn.ModuleDict.__init__(self, modules)
