"""LogProcessor: turns the message hub's histories into MMEngine's log lines and scalar tags."""

from __future__ import annotations

import copy
import datetime
import re
from collections import OrderedDict
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import torch

from fengine.registry import LOG_PROCESSORS
from fengine.runner.log_keys import KeySelection, strip_prefix

_MODES = ("train", "val", "test")


def _has_train_loop(runner: Any) -> bool:
    """A built train loop exists (a loop still held as a config dict does not count)."""
    loop = (
        runner._train_loop
        if hasattr(runner, "_train_loop")
        else getattr(runner, "train_loop", None)
    )
    return loop is not None and not isinstance(loop, dict)


def _dataloader_len(runner: Any, mode: str) -> int:
    loader = getattr(runner, f"{mode}_dataloader", None)
    if loader is None or isinstance(loader, dict):
        loader = getattr(getattr(runner, f"{mode}_loop", None), "dataloader", None)
    if loader is None or isinstance(loader, dict):
        raise ValueError(f"LogProcessor: the runner has no built {mode} dataloader to measure")
    return len(loader)


def _max_cuda_memory_mb(runner: Any) -> int:
    device = getattr(getattr(runner, "model", None), "output_device", None)
    # The number `torch.cuda.max_memory_allocated` reads, taken from the nested statistics: it
    # flattens and sorts all ~120 allocator statistics on every call to return this one.
    stats = torch.cuda.memory_stats_as_nested_dict(device)
    peak = stats.get("allocated_bytes", {}).get("all", {}).get("peak", 0)
    torch.cuda.reset_peak_memory_stats(device)
    return int(peak) // (1024 * 1024)


class LogProcessorConfigError(ValueError, AssertionError):
    """A bad ``custom_cfg`` entry (an ``AssertionError`` too, as MMEngine's ``assert``)."""


class LogProcessorConfigTypeError(TypeError, AssertionError):
    """A ``custom_cfg`` that is not a list of dicts (an ``AssertionError`` too)."""


@LOG_PROCESSORS.register_module()
class LogProcessor:
    """Format the scalars of the current mode into a log line and a tag dict.

    Scalars logged as ``<mode>/<name>`` are read from ``runner.message_hub``; names matching
    ``mean_pattern`` are averaged over the last ``window_size`` records, the others take their
    latest value. The line is a header (``Epoch(train) [e][i/n]``, ``Iter(train) [i/N]``, ...), the
    learning rates (``name: {v:.4e}``), ``eta``/``time``/``data_time`` when the timer hook runs,
    ``memory`` on CUDA machines, then the other items (floats with ``num_digits`` decimals), joined
    by two spaces. The tag (written to the scalar backends) holds the same values plus ``epoch``
    and ``iter`` (see MMEngine's LogProcessor; the formats are identical).

    Args:
        window_size: default averaging window.
        by_epoch: epoch-style headers (``Epoch(...)``) or iteration-style (``Iter(...)``).
        custom_cfg: extra statistics, each ``dict(data_src=name, method_name='mean'|'max'|...,
            window_size=int|'epoch'|'global', log_name=new_name)``; without ``log_name`` the item
            replaces ``data_src``.
        num_digits: decimals of floats in the line.
        log_with_hierarchy: keep the ``train/``/``val/`` prefixes in the tag.
        mean_pattern: regular expression of the names to average.

    Raises:
        ValueError: a ``custom_cfg`` entry without ``data_src``, two entries writing the same
            name, or ``window_size='epoch'`` with ``by_epoch=False``.
        TypeError: ``custom_cfg`` is not a list of dicts.
    """

    def __init__(
        self,
        window_size: int = 10,
        by_epoch: bool = True,
        custom_cfg: Sequence[Mapping[str, Any]] | None = None,
        num_digits: int = 4,
        log_with_hierarchy: bool = False,
        mean_pattern: str = r".*(loss|time|data_time|grad_norm).*",
    ) -> None:
        self.window_size = window_size
        self.by_epoch = by_epoch
        self.custom_cfg: list[dict[str, Any]] = [dict(c) for c in self._checked(custom_cfg)]
        self.num_digits = num_digits
        self.log_with_hierarchy = log_with_hierarchy
        self.mean_pattern = re.compile(mean_pattern)
        self._keys = KeySelection()

    def _checked(self, custom_cfg: Sequence[Mapping[str, Any]] | None) -> list[Mapping[str, Any]]:
        if not custom_cfg:
            return []
        if not isinstance(custom_cfg, Sequence) or not all(
            isinstance(c, Mapping) for c in custom_cfg
        ):
            raise LogProcessorConfigTypeError(
                f"LogProcessor: `custom_cfg` must be a list of dicts, got {custom_cfg!r}"
            )
        names: set[str] = set()
        for cfg in custom_cfg:
            if "data_src" not in cfg:
                raise LogProcessorConfigError(f"LogProcessor: custom_cfg entry {dict(cfg)} needs a `data_src`")
            name = cfg.get("log_name", cfg["data_src"])
            if name in names:
                raise LogProcessorConfigError(
                    f"LogProcessor: custom_cfg writes {name!r} twice; give each entry for "
                    f"{cfg['data_src']!r} a distinct `log_name`"
                )
            names.add(name)
            if not self.by_epoch and cfg.get("window_size") == "epoch":
                raise LogProcessorConfigError(
                    f"LogProcessor: custom_cfg entry {dict(cfg)} uses window_size='epoch', which "
                    "needs by_epoch=True"
                )
        return list(custom_cfg)

    # -- public API ------------------------------------------------------------------------------
    def get_log_after_iter(
        self, runner: Any, batch_idx: int, mode: str
    ) -> tuple[dict[str, Any], str]:
        """The tag and line after iteration ``batch_idx`` of ``mode``.

        Args:
            runner: provides ``message_hub``, ``epoch``, ``iter``, ``max_epochs``, ``max_iters``,
                the dataloaders (or loops) and the train loop.
            batch_idx: index of the batch in the current loop (global in iteration-based
                training).
            mode: ``'train'``, ``'val'`` or ``'test'``.

        Raises:
            ValueError: an unknown ``mode``.
        """
        if mode not in _MODES:
            self._check_mode(mode, _MODES)
        cfg = self._resolve_windows(runner, batch_idx, self.custom_cfg) if self.custom_cfg else []
        log_tag = self._collect_scalars(cfg, runner, mode)
        tag = (
            self._collect_scalars(cfg, runner, mode, True)
            if self.log_with_hierarchy
            else dict(log_tag)
        )

        rates = []
        for key, value in tag.items():
            if key.endswith("lr"):
                name = strip_prefix(key, f"{mode}/")
                log_tag.pop(name)
                rates.append(f"{name}: {value:.{self.num_digits}e}")
        train_loop = _has_train_loop(runner)
        line = self._iter_header(runner, batch_idx, mode, tag, train_loop)
        tag["iter"] = runner.iter + 1 if train_loop else 0
        line += " ".join(rates) + "  "

        hub = runner.message_hub
        if "time" in log_tag and "data_time" in log_tag and "eta" in hub.runtime_info:
            eta = datetime.timedelta(seconds=int(hub.get_info("eta")))
            line += (
                f"eta: {eta}  time: {log_tag.pop('time'):.{self.num_digits}f}  "
                f"data_time: {log_tag.pop('data_time'):.{self.num_digits}f}  "
            )
        if torch.cuda.is_available():
            memory = _max_cuda_memory_mb(runner)
            line += f"memory: {memory}  "
            tag["memory"] = memory
        if mode in ("train", "val"):
            items = [
                f"{name}: {self._fmt(value)}"
                for name, value in log_tag.items()
                # MMEngine shows only `val/loss*` items in val lines; the names here carry no
                # prefix, so in practice validation iteration lines list none.
                if mode == "train" or name.startswith("val/loss")
            ]
            line += "  ".join(items)
        return tag, line

    def get_log_after_epoch(
        self, runner: Any, batch_idx: int, mode: str, with_non_scalar: bool = False
    ) -> tuple[dict[str, Any], str]:
        """The tag and summary line after a validation or test epoch.

        Metrics come first, then runtime infos of the mode (arrays and tensors on their own
        lines), then the epoch means of ``data_time`` and ``time``.

        Args:
            runner: as for :meth:`get_log_after_iter`.
            batch_idx: index of the last batch (sets ``window_size='epoch'``).
            mode: ``'val'`` or ``'test'``.
            with_non_scalar: also put the non-scalar runtime infos in the tag.

        Raises:
            ValueError: ``mode`` is not ``'val'`` or ``'test'``.
        """
        self._check_mode(mode, ("val", "test"))
        size = _dataloader_len(runner, mode)
        if not self.by_epoch:
            line = f"Iter({mode}) [{size}/{size}]  "
        elif mode == "val":
            line = f"Epoch({mode}) [{self._epoch(runner, mode)}][{size}/{size}]  "
        else:
            line = f"Epoch({mode}) [{size}/{size}]  "

        cfg = copy.deepcopy(self.custom_cfg)
        sources = {strip_prefix(c["data_src"], f"{mode}/") for c in cfg}
        for name in ("time", "data_time"):
            if name not in sources:
                cfg.append({"data_src": name, "window_size": "epoch", "method_name": "mean"})
        scalars = self._collect_scalars(
            self._resolve_windows(runner, batch_idx, cfg), runner, mode, self.log_with_hierarchy
        )
        infos = self._collect_infos(runner, mode)
        timing_keys = (f"{mode}/time", f"{mode}/data_time", "time", "data_time")
        tag: dict[str, Any] = OrderedDict(
            (k, v) for k, v in scalars.items() if k not in timing_keys
        )
        timing = OrderedDict((k, v) for k, v in scalars.items() if k in timing_keys)
        items = [
            f"{name}: {self._fmt(value)}"
            for name, value in (*tag.items(), *infos.items(), *timing.items())
        ]
        line += "  " + "  ".join(items)
        if with_non_scalar:
            tag.update(infos)
        tag.update(timing)
        return tag, line

    # -- helpers ---------------------------------------------------------------------------------
    @staticmethod
    def _check_mode(mode: str, allowed: tuple[str, ...]) -> None:
        if mode not in allowed:
            raise ValueError(f"LogProcessor: `mode` must be one of {allowed}, got {mode!r}")

    def _fmt(self, value: Any) -> Any:
        if isinstance(value, float):
            return f"{value:.{self.num_digits}f}"
        if isinstance(value, (torch.Tensor, np.ndarray)):
            return f"\n{value}\n"
        return value

    def _epoch(self, runner: Any, mode: str) -> int:
        if mode == "train":
            return int(runner.epoch) + 1
        return int(runner.epoch) if _has_train_loop(runner) else 0

    def _iter_header(
        self, runner: Any, batch_idx: int, mode: str, tag: dict[str, Any], train_loop: bool
    ) -> str:
        if not self.by_epoch:
            if mode == "train":
                total = runner.max_iters
                current = runner.iter + 1
            else:
                total = _dataloader_len(runner, mode)
                current = batch_idx + 1
            return f"Iter({mode}) [{str(current).rjust(len(str(total)))}/{total}]  "
        size = _dataloader_len(runner, mode)
        current_str = str(batch_idx + 1).rjust(len(str(size)))
        if mode == "test":
            return f"Epoch({mode}) [{current_str}/{size}]  "
        epoch = self._epoch(runner, mode)
        tag["epoch"] = epoch
        epoch_str = f"[{epoch}]"
        if train_loop:  # right-align under the widest epoch number: "[{max_epochs}]" plus a space
            epoch_str = epoch_str.rjust(len(str(runner.max_epochs)) + 3)
        return f"Epoch({mode}){epoch_str}[{current_str}/{size}]  "

    @staticmethod
    def _resolve_windows(
        runner: Any, batch_idx: int, custom_cfg: list[dict[str, Any]]
    ) -> list[dict[str, Any]]:
        """A copy of ``custom_cfg`` with ``'epoch'``/``'global'`` windows turned into counts."""
        resolved = copy.deepcopy(custom_cfg)
        for cfg in resolved:
            window = cfg.get("window_size")
            if window is None or isinstance(window, int):
                continue
            if window == "epoch":
                cfg["window_size"] = batch_idx + 1
            elif window == "global":
                cfg["window_size"] = runner.iter + 1
            else:
                raise TypeError(
                    f"LogProcessor: custom_cfg window_size must be an int, 'epoch' or 'global', "
                    f"got {window!r}"
                )
        return resolved

    def _collect_scalars(
        self, custom_cfg: list[dict[str, Any]], runner: Any, mode: str, keep_prefix: bool = False
    ) -> dict[str, Any]:
        histories = self._keys.histories(
            runner.message_hub.log_scalars, mode, keep_prefix, self.mean_pattern
        )
        window = self.window_size
        tag: dict[str, Any] = OrderedDict()
        for name, (buffer, averaged) in histories.items():
            tag[name] = buffer.mean(window) if averaged else buffer.current
        if not custom_cfg:
            return tag
        prefix = f"{mode}/"
        for cfg in copy.deepcopy(custom_cfg):
            source = cfg.pop("data_src")
            name = cfg.pop("log_name", source)
            if keep_prefix:
                source, name = prefix + source, prefix + name
            if source in histories:
                tag[name] = histories[source][0].statistics(**cfg)
        return tag

    def _collect_infos(self, runner: Any, mode: str) -> dict[str, Any]:
        return OrderedDict(
            (key if self.log_with_hierarchy else strip_prefix(key, f"{mode}/"), value)
            for key, value in runner.message_hub.runtime_info.items()
            if key.startswith(mode)
        )
