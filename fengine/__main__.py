"""``python -m fengine``: train, test and plot from MMEngine-style config files."""

from fengine.cli import main

if __name__ == "__main__":
    raise SystemExit(main())
