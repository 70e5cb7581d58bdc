"""``python -m fengine``: the command-line parser and entry point."""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence

from fengine.cli import commands
from fengine.launch_env import LAUNCHERS

_EPILOG = """examples:
  python -m fengine train examples/configs/digits.py
  python -m fengine train examples/configs/digits.py --cfg-options train_cfg.max_epochs=1
  python -m fengine train examples/configs/digits.py --resume
  python -m fengine test examples/configs/digits.py --checkpoint work_dirs/digits/best_accuracy_epoch_11.pth
  python -m fengine plot work_dirs/digits --keys loss,lr,val/accuracy
  torchrun --nproc-per-node 2 -m fengine train CONFIG.py --launcher pytorch

A mistake in the command line or the config (a syntax error, an unknown --cfg-options key) prints
one message and exits with status 2; --debug (or FENGINE_DEBUG=1) shows the traceback instead.
"""
DEBUG_VARIABLE = "FENGINE_DEBUG"


def _debug_argument(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--debug",
        action="store_true",
        help=f"show the traceback of a config or usage error (or set {DEBUG_VARIABLE}=1)",
    )


def _config_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("config", help="an MMEngine-style Python config file")
    _debug_argument(parser)
    parser.add_argument(
        "--work-dir", help="where checkpoints and logs go (default: ./work_dirs/<config name>)"
    )
    parser.add_argument(
        "--cfg-options",
        nargs="+",
        metavar="KEY=VALUE",
        help="override settings, e.g. train_cfg.max_epochs=1 optim_wrapper.optimizer.lr=0.01",
    )
    parser.add_argument(
        "--launcher",
        choices=list(LAUNCHERS),
        default="none",
        help="how the processes were started (one per rank): 'pytorch' by torchrun, 'slurm' by "
        "srun, 'mpi' by Open MPI's mpirun",
    )


def build_parser() -> argparse.ArgumentParser:
    """The parser of ``python -m fengine`` with its ``train``, ``test`` and ``plot`` commands."""
    parser = argparse.ArgumentParser(
        prog="fengine",
        description="Train, test and plot runs described by MMEngine-style config files.",
        epilog=_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="{train,test,plot}")
    train = sub.add_parser("train", help="train a model from a config file")
    _config_arguments(train)
    train.add_argument(
        "--resume",
        nargs="?",
        const="auto",
        metavar="PATH",
        help="resume from PATH, or without PATH from the work dir's latest checkpoint",
    )
    train.set_defaults(handler=commands.train)

    test = sub.add_parser("test", help="evaluate a checkpoint with the config's test (or val) loop")
    _config_arguments(test)
    test.add_argument(
        "--checkpoint", help="the checkpoint to load (default: the work dir's latest)"
    )
    test.set_defaults(handler=commands.test)

    plot = sub.add_parser("plot", help="draw a run's loss, learning rate and metrics to a PNG")
    plot.add_argument(
        "path",
        metavar="WORK_DIR",
        help="a work dir (its newest run), a run folder or a scalars.json",
    )
    plot.add_argument(
        "--keys",
        help="comma-separated curves, e.g. loss,lr,val/accuracy (default: losses, lr, metrics)",
    )
    plot.add_argument("--out", help="the PNG to write (default: <run folder>/curves.png)")
    _debug_argument(plot)
    plot.set_defaults(handler=commands.plot)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run one command; a mistake in the arguments or the config prints one message.

    The message names what is wrong (a config's syntax error with its file, line and the line
    itself; an unknown ``--cfg-options`` key with the closest known keys). With ``--debug`` or
    ``FENGINE_DEBUG=1`` in the environment the error is raised with its traceback instead.

    Args:
        argv: the arguments (default: ``sys.argv[1:]``).

    Returns:
        The exit status: 0 on success, 2 for a usage or config error.
    """
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        status: int = args.handler(args)
    except commands.UsageError as error:
        if args.debug or os.environ.get(DEBUG_VARIABLE, "") not in ("", "0"):
            raise
        print(f"fengine {args.command}: error: {error}", file=sys.stderr)
        return 2
    return status
