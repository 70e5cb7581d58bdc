"""The ``train``, ``test`` and ``plot`` commands of ``python -m fengine``."""

from __future__ import annotations

import argparse
import glob
import os
import time
from collections.abc import Sequence
from typing import Any

from fengine import dist
from fengine.cli.plot import INSTALL_HINT, draw, plotting_available
from fengine.cli.scalars import SCALARS, default_keys, find_scalars, read_curves, select
from fengine.config import Config, ConfigError, parse_cfg_option
from fengine.launch_env import LauncherEnvironmentError, torchrun_variables
from fengine.runner import Runner, find_latest_checkpoint

PLOT_FILE = "curves.png"


class UsageError(Exception):
    """A mistake in the command line or the config, reported without a traceback."""


def load_config(path: str, cfg_options: Sequence[str] | None, work_dir: str | None) -> Config:
    """Read a config file, apply ``--cfg-options`` and settle the work dir.

    The work dir is ``work_dir`` if given, else the config's ``work_dir``, else
    ``./work_dirs/<config file name without .py>``.

    Args:
        path: the config file.
        cfg_options: ``KEY=VALUE`` items, applied in order.
        work_dir: the ``--work-dir`` argument.

    Returns:
        The config, ready for ``Runner.from_cfg``.

    Raises:
        UsageError: the file is missing or cannot be merged, an option is malformed, or the
            config defines no ``model``.
    """
    if not os.path.isfile(path):
        raise UsageError(f"config file {path!r} does not exist")
    try:
        cfg = Config.fromfile(path)
        cfg.merge_from_dict([parse_cfg_option(item) for item in cfg_options or ()])
    except (ConfigError, FileNotFoundError) as error:
        raise UsageError(str(error)) from error
    if "model" not in cfg:
        raise UsageError(
            f"config {path!r} defines no `model`; a config needs at least a module-level "
            "`model = dict(type='MyModel', ...)` (or a model object)"
        )
    stem = os.path.splitext(os.path.basename(path))[0]
    cfg.work_dir = work_dir or cfg.get("work_dir") or os.path.join("work_dirs", stem)
    return cfg


def _check_launcher(launcher: str, command: str) -> None:
    if launcher == "none":
        return
    try:
        torchrun_variables(launcher, os.environ)
    except LauncherEnvironmentError as error:
        raise UsageError(
            f"--launcher {launcher} expects a process started by its launcher, e.g. `torchrun "
            f"--nproc-per-node 2 -m fengine {command} CONFIG.py --launcher pytorch` or `srun -n 2 "
            f"python -m fengine {command} CONFIG.py --launcher slurm`: {error}"
        ) from None


def _checkpoints(runner: Runner) -> str:
    last = find_latest_checkpoint(runner.work_dir)
    if last is None:
        return f"none saved (work dir {runner.work_dir})"
    best = sorted(glob.glob(os.path.join(os.path.dirname(last), "best_*.pth")))
    names = [f"last {os.path.basename(last)}"] + [f"best {os.path.basename(b)}" for b in best]
    return f"{os.path.dirname(last)} ({', '.join(names)})"


def write_plot(log_dir: str) -> str:
    """Draw the default curves of the run logged in ``log_dir``; returns a line saying where.

    Args:
        log_dir: the run's ``<work_dir>/<timestamp>`` folder.

    Returns:
        The PNG's path, or why there is none (matplotlib missing, nothing logged).
    """
    scalars = os.path.join(log_dir, SCALARS)
    if not plotting_available():
        return f"not drawn: {INSTALL_HINT} to get one"
    if not os.path.isfile(scalars):
        return "not drawn: no scalars were logged"
    curves = read_curves(scalars)
    keys = default_keys(curves)
    if not keys:
        return "not drawn: no loss, learning rate or metric was logged"
    return draw(select(curves, keys), os.path.join(log_dir, PLOT_FILE), os.path.basename(log_dir))


def _report(runner: Runner, seconds: float, what: str) -> None:
    """Log where the run's outputs are (rank 0 only)."""
    if not dist.is_main_process():
        return
    scalars = os.path.join(runner.log_dir, SCALARS)
    lines = [f"{what} finished in {seconds:.1f} s. Outputs:"]
    if what == "training":
        lines.append(f"  checkpoints  {_checkpoints(runner)}")
    lines += [
        f"  log          {os.path.join(runner.log_dir, runner.timestamp + '.log')}",
        f"  scalars      {scalars if os.path.isfile(scalars) else 'none'}",
    ]
    if what == "training":
        lines.append(f"  plot         {write_plot(runner.log_dir)}")
    runner.logger.info("\n".join(lines))


def train(args: argparse.Namespace) -> int:
    """``python -m fengine train CONFIG``: build a Runner from the config and train.

    Args:
        args: parsed arguments (``config``, ``work_dir``, ``resume``, ``cfg_options``,
            ``launcher``).

    Returns:
        The exit status (0).

    Raises:
        UsageError: a config mistake (see :func:`load_config`) or ``--launcher pytorch``
            outside torchrun.
    """
    _check_launcher(args.launcher, "train")
    cfg = load_config(args.config, args.cfg_options, args.work_dir)
    if args.resume == "auto":
        cfg.resume, cfg.load_from = True, None
    elif args.resume is not None:
        cfg.resume, cfg.load_from = True, args.resume
    cfg.launcher = args.launcher
    start = time.perf_counter()
    runner = Runner.from_cfg(cfg)
    runner.train()
    _report(runner, time.perf_counter() - start, "training")
    return 0


def test(args: argparse.Namespace) -> int:
    """``python -m fengine test CONFIG``: load a checkpoint and run the test loop.

    The loop uses the config's ``test_*`` components, or its ``val_*`` ones when it has no test
    set. Without ``--checkpoint`` the newest checkpoint of the work dir is used.

    Args:
        args: parsed arguments (``config``, ``checkpoint``, ``work_dir``, ``cfg_options``,
            ``launcher``).

    Returns:
        The exit status (0).

    Raises:
        UsageError: no checkpoint to load, the config has neither component set, or
            ``--launcher pytorch`` outside torchrun.
    """
    _check_launcher(args.launcher, "test")
    cfg = load_config(args.config, args.cfg_options, args.work_dir)
    checkpoint = args.checkpoint or find_latest_checkpoint(cfg.work_dir)
    if checkpoint is None:
        raise UsageError(
            f"no checkpoint to test: pass --checkpoint PATH (none recorded in {cfg.work_dir}/last_checkpoint)"
        )
    if not os.path.exists(checkpoint):  # a file, or a sharded checkpoint's directory
        raise UsageError(f"checkpoint {checkpoint!r} does not exist")
    parts = ("dataloader", "cfg", "evaluator")
    missing = [f"test_{part}" for part in parts if cfg.get(f"test_{part}") is None]
    if missing:
        if not all(cfg.get(f"val_{part}") is not None for part in parts):
            raise UsageError(
                f"config {args.config!r} has no test_dataloader/test_cfg/test_evaluator nor "
                "val_dataloader/val_cfg/val_evaluator to evaluate with"
            )
        # The test loop, not runner.val(): validation would let CheckpointHook save a "best"
        # checkpoint and EarlyStoppingHook count a record, as they do during training.
        for part in parts:
            cfg[f"test_{part}"] = cfg[f"val_{part}"]
    cfg.load_from, cfg.resume, cfg.launcher = checkpoint, False, args.launcher
    start = time.perf_counter()
    runner = Runner.from_cfg(cfg)
    if missing:
        runner.logger.info(
            f"the config has no {'/'.join(missing)}: testing on the validation data (its "
            "val_dataloader, val_cfg and val_evaluator)"
        )
    metrics: dict[str, Any] = runner.test()
    shown = ", ".join(
        f"{k}: {v:.4f}" if isinstance(v, float) else f"{k}: {v}" for k, v in metrics.items()
    )
    runner.logger.info(f"{checkpoint}: {shown}")
    _report(runner, time.perf_counter() - start, "testing")
    return 0


def plot(args: argparse.Namespace) -> int:
    """``python -m fengine plot WORK_DIR``: draw a run's curves to a PNG.

    Args:
        args: parsed arguments (``path``, ``keys``, ``out``).

    Returns:
        The exit status (0).

    Raises:
        UsageError: no scalars there, an unknown key, or matplotlib is missing.
    """
    if not plotting_available():
        raise UsageError(f"plotting needs matplotlib: {INSTALL_HINT}")
    try:
        scalars = find_scalars(args.path)
        curves = read_curves(scalars)
        keys = (
            [k.strip() for k in args.keys.split(",") if k.strip()]
            if args.keys
            else default_keys(curves)
        )
        chosen = select(curves, keys)
    except (FileNotFoundError, ValueError) as error:
        raise UsageError(str(error)) from None
    except KeyError as error:
        raise UsageError(error.args[0]) from None
    folder = os.path.dirname(scalars)
    run_dir = os.path.dirname(folder) if os.path.basename(folder) == "vis_data" else folder
    out = args.out or os.path.join(run_dir, PLOT_FILE)
    print(f"plot: {draw(chosen, out, os.path.basename(run_dir))}")
    return 0
