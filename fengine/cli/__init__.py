"""The command line: ``python -m fengine train|test|plot`` (see :func:`fengine.cli.main.main`)."""

from fengine.cli.main import build_parser, main

__all__ = ["build_parser", "main"]
