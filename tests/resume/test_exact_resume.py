"""A run stopped at any iteration and resumed ends bit-identical to the run never stopped.

The run (see :mod:`resume_toys`) has everything a resume must restore: shuffled data (a seeded
``DefaultSampler`` for epochs, an ``InfiniteSampler`` for iterations), dropout, BatchNorm
buffers, SGD with momentum or AdamW, gradient accumulation over two iterations (so some
checkpoints fall inside an accumulation group), a warm-up + cosine schedule, EMA, and early
stopping that keeps the best weights. Hypothesis picks where the run dies; a new runner with
``resume=True`` continues from the newest checkpoint; every final tensor is compared with
``torch.equal``.
"""

from __future__ import annotations

import tempfile
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from resume_toys import (
    CrashAt,
    assert_same_run,
    final_numbers,
    final_tensors,
    reference,
    resume_kwargs,
)

from fengine.runner.checkpoint import read_checkpoint
from fengine.runner.runner import Runner


def crash_then_resume(work_dir: Path, by_epoch: bool, optimizer: str, at: int) -> Runner:
    """Die before iteration ``at``, then resume from the work dir and train to the end."""
    kwargs = resume_kwargs(work_dir, by_epoch, optimizer)
    with pytest.raises(RuntimeError, match="crash before iteration"):
        Runner(**dict(kwargs, custom_hooks=[*kwargs["custom_hooks"], CrashAt(at)])).train()
    resumed = Runner(**resume_kwargs(work_dir, by_epoch, optimizer, resume=True))
    resumed.train()
    return resumed


@pytest.mark.parametrize("by_epoch", [True, False], ids=["epochs", "iterations"])
@settings(max_examples=8)
@given(data=st.data())
def test_stopped_anywhere_resumes_bit_identically(by_epoch: bool, data: st.DataObject) -> None:
    optimizer = data.draw(st.sampled_from(["SGD", "AdamW"]), label="optimizer")
    expected_tensors, expected_numbers = reference(by_epoch, optimizer)
    last = expected_numbers["counters"][1]  # early stopping ends the run here
    at = data.draw(st.integers(1, last - 1), label="crash before iteration")
    with tempfile.TemporaryDirectory() as tmp:
        resumed = crash_then_resume(Path(tmp), by_epoch, optimizer, at)
        assert final_numbers(resumed) == expected_numbers
        assert_same_run(expected_tensors, final_tensors(resumed))


def test_a_checkpoint_inside_an_accumulation_group_carries_the_gradients(tmp_path: Path) -> None:
    """Iteration 3 is the first half of the second group: its checkpoint holds the summed gradients."""
    kwargs = resume_kwargs(tmp_path, True, "SGD")
    runner = Runner(**dict(kwargs, custom_hooks=[*kwargs["custom_hooks"], CrashAt(4)]))
    with pytest.raises(RuntimeError, match="crash before iteration"):
        runner.train()
    odd = read_checkpoint(str(tmp_path / "iter_3.pth"))
    even = read_checkpoint(str(tmp_path / "iter_4.pth"))
    assert sorted(odd["grads"]) == sorted(name for name, _ in runner.model.named_parameters())
    assert all(bool(g.abs().sum() > 0) for g in odd["grads"].values())
    assert "grads" not in even


def test_resuming_inside_a_group_does_not_warn_of_lost_gradients(tmp_path: Path) -> None:
    kwargs = resume_kwargs(tmp_path, True, "SGD")
    with pytest.raises(RuntimeError, match="crash before iteration"):
        Runner(**dict(kwargs, custom_hooks=[*kwargs["custom_hooks"], CrashAt(4)])).train()
    (tmp_path / "last_checkpoint").write_text(str(tmp_path / "iter_3.pth"))
    resumed = Runner(**dict(kwargs, resume=True, train_cfg={"by_epoch": True, "max_epochs": 1}))
    resumed.train_loop  # noqa: B018
    resumed.load_or_resume()
    assert resumed.iter == 3 and all(p.grad is not None for p in resumed.model.parameters())
    resumed.train()
    log = next(Path(resumed.log_dir).glob("*.log")).read_text()
    assert "BatchNorm" in log and "not divisible" not in log  # warnings are logged; this one is not
