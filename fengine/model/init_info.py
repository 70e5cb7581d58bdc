"""Which initialiser last changed each parameter: recorded during ``init_weights``, then logged.

While a top-level ``init_weights`` runs, every submodule carries the same table
``_params_init_info``: parameter → :class:`ParamInitInfo`. An initialiser that ran calls
:func:`update_init_info`, which credits it for every parameter whose mean value changed since the
last entry. The table is dumped to the current :class:`~fengine.logging.MMLogger` (on rank 0) and
removed at the end.
"""

from __future__ import annotations

import logging

import attrs
from torch import Tensor, nn

from fengine.dist import get_rank
from fengine.logging.logger import MMLogger

#: The attribute every submodule carries while a top-level ``init_weights`` runs.
INIT_INFO_ATTR = "_params_init_info"

@attrs.frozen(eq=False)
class ParamInitInfo:
    """What last initialised a parameter, and its mean value after that."""

    init_info: str
    mean_value: Tensor


ParamInitTable = dict[Tensor, ParamInitInfo]


def _mean(param: Tensor) -> Tensor:
    return param.detach().mean().cpu()


def start_init_info(module: nn.Module) -> ParamInitTable:
    """Build the table for a top-level ``init_weights`` and attach it to every submodule.

    Args:
        module: the module whose ``init_weights`` was called first.

    Returns:
        The shared table, each parameter credited to "no change" until an initialiser moves it.
    """
    text = (
        f"The value is the same before and after calling `init_weights` of {type(module).__name__} "
    )
    table: ParamInitTable = {p: ParamInitInfo(text, _mean(p)) for _, p in module.named_parameters()}
    for sub in module.modules():
        object.__setattr__(sub, INIT_INFO_ATTR, table)
    return table


def end_init_info(module: nn.Module, table: ParamInitTable) -> None:
    """Log ``name - shape: init_info`` for every parameter and detach the table from submodules.

    MMEngine's layout, on rank 0 only: written straight to the streams of the file handlers of
    the current :class:`~fengine.logging.MMLogger` (the latest created, e.g. the runner's) when
    it has some (so the long list stays out of the console), else logged to it at INFO.

    Args:
        module: the top-level module.
        table: the table from :func:`start_init_info`.
    """
    lines = [
        f"\n{name} - {param.shape}: \n{table[param].init_info} \n"
        for name, param in module.named_parameters()
        if param in table
    ]
    if get_rank() == 0:
        _dump(lines)
    for sub in module.modules():
        if INIT_INFO_ATTR in sub.__dict__:
            object.__delattr__(sub, INIT_INFO_ATTR)


def _dump(lines: list[str]) -> None:
    logger = MMLogger.get_current_instance()
    file_handlers = [h for h in logger.handlers if isinstance(h, logging.FileHandler)]
    for handler in file_handlers:
        if handler.stream is None:  # a FileHandler opened with delay=True
            handler.stream = handler._open()
        handler.stream.write("Name of parameter - Initialization information\n")
        handler.stream.write("".join(lines))
        handler.stream.flush()
    if not file_handlers:
        for line in lines:
            logger.info(line)


def update_init_info(module: nn.Module, init_info: str) -> None:
    """Credit ``init_info`` for every parameter of ``module`` whose mean value changed.

    Args:
        module: a module inside a running ``init_weights`` (it carries the shared table).
        init_info: the text to record, e.g. ``'ConstantInit: val=1, bias=0'``.

    Raises:
        AttributeError: ``module`` carries no table (``init_weights`` is not running).
        KeyError: a parameter that was not in the model when ``init_weights`` started.
    """
    table: ParamInitTable | None = module.__dict__.get(INIT_INFO_ATTR)
    if table is None:
        raise AttributeError(
            f"update_init_info: {type(module).__name__} has no `{INIT_INFO_ATTR}`; it is only "
            "available while a top-level `init_weights()` is running"
        )
    for name, param in module.named_parameters():
        if param not in table:
            raise KeyError(
                f"update_init_info: parameter {name!r} of {type(module).__name__} was added after "
                "`init_weights()` started; add parameters before initialising"
            )
        mean = _mean(param)
        # NaN never equals itself, so a NaN mean counts as changed, as in MMEngine.
        if bool(table[param].mean_value != mean):
            table[param] = ParamInitInfo(init_info, mean)
