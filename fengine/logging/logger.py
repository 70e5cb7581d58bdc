"""MMLogger: a rank-aware ``logging.Logger`` with console and file output, and ``print_log``."""

from __future__ import annotations

import getpass
import inspect
import logging
import logging.handlers
import os
import socket
import sys
from collections.abc import Mapping
from typing import Any

import torch

from fengine.dist import get_rank, get_world_size
from fengine.utils.manager import ManagerMixin

_COLOURS = {"ERROR": "31", "WARNING": "33", "INFO": "37", "DEBUG": "32"}


class FilterDuplicateWarning(logging.Filter):
    """Let each distinct WARNING message through once; other levels always pass.

    Args:
        name: the logger name the filter applies to.
    """

    def __init__(self, name: str = "fengine") -> None:
        super().__init__(name)
        self.seen: set[object] = set()

    def filter(self, record: logging.LogRecord) -> bool:
        """Whether to emit ``record``."""
        if record.levelno != logging.WARNING:
            return True
        if record.msg in self.seen:
            return False
        self.seen.add(record.msg)
        return True


class LevelFormatter(logging.Formatter):
    """``<time> - <logger> - <LEVEL> - <message>``; errors also name the file, function and line.

    Args:
        color: underline and colour the level name with ANSI codes (terminals only).
        datefmt: ``strftime`` format of the time.
    """

    def __init__(self, color: bool = False, datefmt: str | None = None) -> None:
        super().__init__(datefmt=datefmt)
        # (second, converter, datefmt, text) of the latest formatted time (see formatTime).
        self._time_cache: tuple[float, Any, str | None, str] = (-1.0, None, None, "")
        self._formats: dict[int, str] = {}
        for level_name in _COLOURS:
            label = f"\033[4;{_COLOURS[level_name]}m{level_name}\033[0m" if color else level_name
            where = " - %(pathname)s - %(funcName)s - %(lineno)d" if level_name == "ERROR" else ""
            self._formats[logging.getLevelName(level_name)] = (
                f"%(asctime)s - %(name)s - {label}{where} - %(message)s"
            )

    def format(self, record: logging.LogRecord) -> str:
        """Format ``record`` with the layout of its level."""
        fmt = self._formats.get(
            record.levelno, "%(asctime)s - %(name)s - %(levelname)s - %(message)s"
        )
        self._style._fmt = fmt
        return super().format(record)

    def formatTime(self, record: logging.LogRecord, datefmt: str | None = None) -> str:
        """The record's time as :class:`logging.Formatter` writes it.

        With a ``datefmt`` the text depends only on the whole second of ``record.created``
        (``converter`` floors it), so it is formatted once per second and reused: log lines
        come many per second and ``strftime`` costs more than the rest of the line.
        """
        if not datefmt:
            return super().formatTime(record, datefmt)
        second = record.created // 1
        converter = self.converter
        cached = self._time_cache
        if cached[0] == second and cached[1] is converter and cached[2] == datefmt:
            return cached[3]
        text = super().formatTime(record, datefmt)
        self._time_cache = (second, converter, datefmt, text)
        return text


def _wants_colour(stream: Any) -> bool:
    isatty = getattr(stream, "isatty", None)
    return bool(isatty and isatty()) and "NO_COLOR" not in os.environ


def _get_device_id() -> int | str:
    """The physical device of this process: ``LOCAL_RANK`` mapped through ``CUDA_VISIBLE_DEVICES``.

    Without CUDA, the local rank itself. A visible-devices entry that is not a number (a MIG
    instance's UUID) is returned as it is.
    """
    local_rank = int(os.getenv("LOCAL_RANK", "0"))
    if not torch.cuda.is_available():
        return local_rank
    visible = os.getenv("CUDA_VISIBLE_DEVICES")
    devices = (
        visible.split(",") if visible is not None else [str(i) for i in range(torch.cuda.device_count())]
    )
    try:
        return int(devices[local_rank])
    except ValueError:
        return devices[local_rank]


def _get_host_info() -> str:
    """``user@host``, or the host alone where the user has no database entry (containers)."""
    try:
        return f"{getpass.getuser()}@{socket.gethostname()}"
    except Exception:
        return socket.gethostname()


def _get_rank() -> int:
    """This process's rank (MMEngine's module-level name, read at each logger's construction)."""
    return get_rank()


def _get_world_size() -> int:
    """How many processes run (MMEngine's module-level name)."""
    return get_world_size()


def _file_handler_class(cfg: Mapping[str, Any]) -> type[logging.FileHandler]:
    """The ``logging.FileHandler`` subclass that ``cfg['type']`` names."""
    known = {
        name: cls
        for name, cls in vars(logging.handlers).items()
        if inspect.isclass(cls) and issubclass(cls, logging.FileHandler)
    }
    known["FileHandler"] = logging.FileHandler
    name = cfg.get("type")
    if name not in known:
        raise ValueError(
            f"MMLogger: `file_handler_cfg` needs a `type` naming a file handler of "
            f"logging.handlers, got type={name!r}; known: {sorted(known)}"
        )
    return known[name]


def _per_rank_file(log_file: str, rank: int) -> str:
    stem, suffix = os.path.splitext(os.path.basename(log_file))
    name = f"{stem}_{_get_host_info()}_device{_get_device_id()}_rank{rank}{suffix}"
    return os.path.join(os.path.dirname(log_file), name)


class MMLogger(logging.Logger, ManagerMixin):
    """A named global logger that writes to the console and, optionally, a file.

    On rank 0 the console shows records at ``log_level`` and above, and ``log_file`` receives
    them; other ranks show only errors and write no file, unless ``distributed=True`` or the
    level is DEBUG in a multi-process run: then each rank writes its own
    ``<stem>_<user>@<host>_device<d>_rank<r><suffix>`` next to ``log_file``. Repeated identical
    warnings are shown once. The logger is not part of ``logging``'s hierarchy, so third-party
    logging configuration does not affect it.

    Args:
        name: the global instance name (``get_instance``).
        logger_name: the ``logging`` name printed in each record.
        log_file: file to write, if any (parent folders are created).
        log_level: level name or number for the handlers.
        file_mode: ``'w'`` to start the file afresh, ``'a'`` to append.
        distributed: write one file per rank in multi-process runs.
        file_handler_cfg: the file handler to use instead of ``logging.FileHandler``:
            ``dict(type=NAME, **kwargs)`` with ``NAME`` a ``FileHandler`` subclass of
            ``logging.handlers`` (``'RotatingFileHandler'``, ``'TimedRotatingFileHandler'``,
            ``'WatchedFileHandler'``, ...), built as ``NAME(filename=log_file, **kwargs)``
            (``file_mode`` then does not apply; pass ``mode`` among the kwargs).

    Raises:
        ValueError: an unknown ``log_level`` name, a ``file_mode`` other than ``'w'``/``'a'``, or
            a ``file_handler_cfg`` without ``type`` or naming no file handler.
    """

    def __init__(
        self,
        name: str,
        logger_name: str = "fengine",
        log_file: str | None = None,
        log_level: int | str = "INFO",
        file_mode: str = "w",
        distributed: bool = False,
        file_handler_cfg: Mapping[str, Any] | None = None,
    ) -> None:
        logging.Logger.__init__(self, logger_name)
        ManagerMixin.__init__(self, name)
        level = self._parse_level(log_level)
        if file_mode not in ("w", "a"):
            raise ValueError(f"MMLogger: `file_mode` must be 'w' or 'a', got {file_mode!r}")
        if file_handler_cfg is not None:
            _file_handler_class(file_handler_cfg)  # checked before any file is opened
        rank = _get_rank()
        console = logging.StreamHandler(stream=sys.stdout)
        console.setFormatter(
            LevelFormatter(color=_wants_colour(sys.stdout), datefmt="%m/%d %H:%M:%S")
        )
        console.setLevel(level if rank == 0 else logging.ERROR)
        console.addFilter(FilterDuplicateWarning(logger_name))
        self.handlers.append(console)
        if log_file is not None:
            per_rank = (level <= logging.DEBUG or distributed) and _get_world_size() > 1
            if per_rank:
                log_file = _per_rank_file(log_file, rank)
            if rank == 0 or per_rank:
                os.makedirs(os.path.dirname(os.path.abspath(log_file)), exist_ok=True)
                file_handler: logging.FileHandler
                if file_handler_cfg is None:
                    file_handler = logging.FileHandler(log_file, file_mode, encoding="utf-8")
                else:
                    kwargs = {k: v for k, v in file_handler_cfg.items() if k != "type"}
                    kwargs.setdefault("filename", log_file)
                    file_handler = _file_handler_class(file_handler_cfg)(**kwargs)
                file_handler.setFormatter(LevelFormatter(color=False, datefmt="%Y/%m/%d %H:%M:%S"))
                file_handler.setLevel(level)
                file_handler.addFilter(FilterDuplicateWarning(logger_name))
                self.handlers.append(file_handler)
        self._log_file = log_file

    @staticmethod
    def _parse_level(log_level: int | str) -> int:
        if isinstance(log_level, int):
            return log_level
        level = logging.getLevelName(str(log_level).upper())
        if not isinstance(level, int):
            raise ValueError(
                f"MMLogger: unknown `log_level` {log_level!r}; use DEBUG, INFO, WARNING, ERROR, "
                "CRITICAL or a number"
            )
        return level

    @property
    def log_file(self) -> str | None:
        """The file this process writes (its per-rank name in distributed mode), if any."""
        return self._log_file

    @classmethod
    def get_current_instance(cls) -> MMLogger:
        """The latest created logger; one named ``'fengine'`` is created if none exists."""
        if not cls._instance_dict:
            cls.get_instance("fengine")
        logger: MMLogger = super().get_current_instance()
        return logger

    def callHandlers(self, record: logging.LogRecord) -> None:
        """Send ``record`` to this logger's own handlers only (no parents, no last resort)."""
        for handler in self.handlers:
            if record.levelno >= handler.level:
                handler.handle(record)

    def setLevel(self, level: int | str) -> None:
        """Set the logger's own level and clear the level caches of every MMLogger."""
        self.level = self._parse_level(level)
        # logging caches isEnabledFor() answers per logger; ours are outside logging's manager,
        # which would otherwise clear them.
        for logger in (*type(self)._instance_dict.values(), self):
            logger.__dict__.get("_cache", {}).clear()


def print_log(
    msg: Any, logger: logging.Logger | str | None = None, level: int = logging.INFO
) -> None:
    """Log ``msg`` through a logger chosen by ``logger``.

    Args:
        msg: the message.
        logger: ``None`` prints with ``print``; a ``logging.Logger`` logs to it; ``'silent'``
            drops the message; ``'current'`` uses the latest MMLogger; another string names an
            existing MMLogger instance.
        level: the logging level (not used by ``print``).

    Raises:
        ValueError: ``logger`` names an MMLogger that does not exist.
        TypeError: ``logger`` is of another type.
    """
    if logger is None:
        print(msg)
    elif isinstance(logger, logging.Logger):
        logger.log(level, msg)
    elif logger == "silent":
        return
    elif logger == "current":
        MMLogger.get_current_instance().log(level, msg)
    elif isinstance(logger, str):
        if not MMLogger.check_instance_created(logger):
            raise ValueError(
                f"print_log: no MMLogger named {logger!r} exists; existing: "
                f"{list(MMLogger._instance_dict)} (or use None, 'silent', 'current' or a Logger)"
            )
        MMLogger.get_instance(logger).log(level, msg)
    else:
        raise TypeError(
            "print_log: `logger` must be a logging.Logger, a logger name, 'silent', 'current' or "
            f"None, got {type(logger).__name__}"
        )
