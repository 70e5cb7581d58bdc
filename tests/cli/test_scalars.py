"""Reading scalars.json into curves: training vs validation records, units, run choice, errors."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from fengine.cli.scalars import Curve, default_keys, find_scalars, read_curves, select


def _write(path: Path, records: list[dict[str, Any]]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(json.dumps(r) + "\n" for r in records))
    return path


_values = st.floats(-1e6, 1e6, allow_nan=False)


@given(
    st.lists(st.tuples(_values, _values), min_size=1, max_size=12),
    st.lists(_values, max_size=5),
    st.booleans(),
)
@settings(max_examples=40, suppress_health_check=[HealthCheck.function_scoped_fixture])
def test_training_and_validation_records_become_separate_curves(
    tmp_path: Path, train: list[tuple[float, float]], val: list[float], by_epoch: bool
) -> None:
    records: list[dict[str, Any]] = []
    for i, (loss, lr) in enumerate(train, 1):
        counters = {"epoch": 1 + i // 4, "iter": 5 * i} if by_epoch else {"iter": 5 * i}
        records.append(
            {
                "lr": lr,
                "loss": loss,
                "time": 0.1,
                **counters,
                "step": 5 * i,
                "flag": True,
                "tag": "x",
            }
        )
        if i % 4 == 0 and i // 4 <= len(val):
            records.append(
                {"accuracy": val[i // 4 - 1], "time": 0.2, "step": i // 4 if by_epoch else 5 * i}
            )
    curves = read_curves(str(_write(tmp_path / "scalars.json", records)))
    steps = tuple(float(5 * i) for i in range(1, len(train) + 1))
    assert curves["loss"] == Curve("loss", "iteration", steps, tuple(loss for loss, _ in train))
    assert curves["lr"].values == tuple(lr for _, lr in train)
    assert (
        "flag" not in curves
        and "tag" not in curves
        and "iter" not in curves
        and "step" not in curves
    )
    validated = [r for r in records if "iter" not in r]
    if validated:
        assert curves["val/accuracy"] == Curve(
            "val/accuracy",
            "epoch" if by_epoch else "iteration",
            tuple(float(r["step"]) for r in validated),
            tuple(r["accuracy"] for r in validated),
        )
        assert list(curves)[-2:] == ["val/accuracy", "val/time"]
    assert default_keys(curves) == ["loss", "lr"] + (["val/accuracy"] if validated else [])


def test_select_finds_bare_validation_names_and_lists_the_choices() -> None:
    curves = {n: Curve(n, "iteration", (1.0,), (0.0,)) for n in ("loss", "val/accuracy")}
    assert [c.name for c in select(curves, ["accuracy", "loss", "val/accuracy"])] == [
        "val/accuracy",
        "loss",
        "val/accuracy",
    ]
    with pytest.raises(
        KeyError, match=r"no curve named 'lr' in the scalars; available: loss, val/accuracy"
    ):
        select(curves, ["lr"])


def test_find_scalars_prefers_the_newest_run_that_trained(tmp_path: Path) -> None:
    train = [{"loss": 1.0, "iter": 1, "step": 1}]
    old = _write(tmp_path / "20250101_000000" / "vis_data" / "scalars.json", train)
    trained = _write(tmp_path / "20250102_000000" / "vis_data" / "scalars.json", train)
    tested = _write(
        tmp_path / "20250103_000000" / "vis_data" / "scalars.json", [{"accuracy": 1.0, "step": 0}]
    )
    os.utime(old, (2e9, 2e9))  # names, not modification times, order the runs
    assert find_scalars(str(tmp_path)) == str(trained)
    assert find_scalars(str(tmp_path / "20250103_000000")) == str(tested)
    assert find_scalars(str(old)) == str(old)
    os.remove(trained)
    os.remove(old)
    assert find_scalars(str(tmp_path)) == str(tested)  # only an evaluation run left
    with pytest.raises(
        FileNotFoundError, match=r"no scalars under '.*nothing'.*<timestamp>/vis_data/scalars\.json"
    ):
        find_scalars(str(tmp_path / "nothing"))


def test_malformed_lines_name_the_file_and_line(tmp_path: Path) -> None:
    path = tmp_path / "scalars.json"
    path.write_text('{"loss": 1, "iter": 1}\n\n[1, 2]\n')
    with pytest.raises(ValueError, match=r"scalars\.json:3 is not a JSON object: \[1, 2\]"):
        read_curves(str(path))
    path.write_text('{"loss": 1, "iter": 1}\n{"loss": \n')
    with pytest.raises(ValueError, match=r"scalars\.json:2 is not a JSON line"):
        read_curves(str(path))
