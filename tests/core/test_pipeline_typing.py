"""mypy --strict sees a hook's state type flow through FnHook[S]: a mismatched handler is an error."""

from __future__ import annotations

import textwrap

import pytest

mypy_api = pytest.importorskip("mypy.api")

SNIPPET = textwrap.dedent(
    """
    from fengine.core import Event, EventInfo, FnHook, RunState

    def count(run: RunState, own: int, info: EventInfo) -> tuple[RunState, int]:
        return run, own + 1

    good: FnHook[int] = FnHook(name="c", priority=50, init=0, on={Event.AFTER_TRAIN_ITER: count})
    bad: FnHook[str] = FnHook(name="c", priority=50, init="x", on={Event.AFTER_TRAIN_ITER: count})
    """
)


def test_state_type_mismatch_is_reported(tmp_path: object) -> None:
    import pathlib

    path = pathlib.Path(str(tmp_path)) / "snippet.py"
    path.write_text(SNIPPET)
    out, _, status = mypy_api.run(["--strict", "--no-incremental", "--follow-imports=silent", str(path)])
    errors = [line for line in out.splitlines() if ": error:" in line]
    assert status == 1
    assert len(errors) == 1 and ":8:" in errors[0], out
