"""The examples, each run as a user runs it (a fresh process, tiny settings, bounded time)."""

from __future__ import annotations

import glob
import json
import os
import re
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
import torch

from fengine.cli import main
from fengine.cli.main import build_parser

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"
DIGITS = str(EXAMPLES / "configs" / "digits.py")
README = EXAMPLES.parent / "README.md"


@pytest.fixture(autouse=True)
def _keep_torch_threads() -> Iterator[None]:
    """The digits config sets torch's thread count; other tests in this process keep theirs."""
    threads = torch.get_num_threads()
    yield
    torch.set_num_threads(threads)


def _run(*argv: str, cwd: Path) -> str:
    # One thread per process: CI machines are small and busy, and these models are tiny.
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    done = subprocess.run(
        [sys.executable, *argv],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=240,
        check=False,
    )
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-4000:]
    return done.stdout + done.stderr


def test_digits_config_trains_from_the_command_line(tmp_path: Path) -> None:
    out = _run(
        "-m", "fengine", "train", DIGITS, "--cfg-options", "train_cfg.max_epochs=1", cwd=tmp_path
    )
    work_dir = tmp_path / "work_dirs" / "digits"
    assert (work_dir / "last_checkpoint").read_text().strip() == str(work_dir / "epoch_1.pth")
    (plot,) = glob.glob(str(work_dir / "*" / "curves.png"))
    assert f"plot         {plot}" in out and "eta: " in out
    assert "Warning:" not in out  # no Python warning the user did not ask for
    accuracy = float(re.findall(r"Epoch\(val\) \[1\]\[2/2\]\s+accuracy: ([0-9.]+)", out)[0])
    assert 0.1 < accuracy <= 1.0


def test_digits_reaches_the_stated_accuracy(tmp_path: Path) -> None:
    """The README's claim: at least 0.95 validation accuracy with the config as shipped."""
    assert main(["train", DIGITS, "--work-dir", str(tmp_path)]) == 0
    (scalars,) = glob.glob(str(tmp_path / "*" / "vis_data" / "scalars.json"))
    val = [
        json.loads(line) for line in Path(scalars).read_text().splitlines() if '"iter"' not in line
    ]
    best = max(val, key=lambda r: r["accuracy"])
    assert best["accuracy"] >= 0.95 and val[-1]["accuracy"] >= 0.95
    (path,) = glob.glob(str(tmp_path / "best_accuracy_epoch_*.pth"))
    assert torch.load(path, weights_only=True)["meta"]["epoch"] == best["step"]
    # The checkpoints that `--help` and the README name are ones the main job writes.
    named = re.findall(r"work_dirs/digits/(\w+\.pth)", build_parser().format_help() + README.read_text())
    assert named and all((tmp_path / name).is_file() for name in named), named
    log = "".join(p.read_text() for p in tmp_path.glob("*/*.log"))
    if len(val) < 15:  # early stopping: three epochs without a gain after the best one
        assert [r["step"] for r in val] == list(range(1, best["step"] + 4))
        assert "the monitored metric did not improve in the last 3 records" in log


def test_digits_falls_back_to_generated_images_without_scikit_learn(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setitem(sys.modules, "sklearn", None)
    monkeypatch.setitem(sys.modules, "sklearn.datasets", None)
    argv = ["train", DIGITS, "--work-dir", str(tmp_path), "--cfg-options", "train_cfg.max_epochs=2"]
    assert main(argv) == 0
    log = "".join(p.read_text() for p in tmp_path.glob("*/*.log"))
    assert (
        "scikit-learn is not installed (pip install 'fengine[examples]'): training on generated"
        in log
    )
    (scalars,) = glob.glob(str(tmp_path / "*" / "vis_data" / "scalars.json"))
    val = [
        json.loads(line) for line in Path(scalars).read_text().splitlines() if '"iter"' not in line
    ]
    assert val[-1]["step"] == 2 and val[-1]["accuracy"] > 0.9  # the generated classes are easy


def test_functional_train_learns_and_its_checkpoint_reloads(tmp_path: Path) -> None:
    state = tmp_path / "state.pt"
    out = _run(
        str(EXAMPLES / "functional_train.py"), "--epochs", "2", "--save", str(state), cwd=tmp_path
    )
    accuracies = [float(a) for a in re.findall(r"val accuracy ([0-9.]+)", out)]
    assert len(accuracies) == 2 and accuracies[1] > 0.8
    assert "it reloads with weights_only=True" in out
    saved = torch.load(state, weights_only=True)
    assert saved["step"] == 2 * 23 and saved["epoch"] == 2


def test_mmengine_style_examples_run_together(tmp_path: Path) -> None:
    work_dir = tmp_path / "work"
    out = _run(
        str(EXAMPLES / "mmengine_style.py"),
        "--work-dir",
        str(work_dir),
        "--epochs",
        "5",
        cwd=tmp_path,
    )
    order = re.findall(r"hooks in the order they run: (.*)", out)[0].split(", ")
    names = [h.split("(")[0] for h in order]
    assert (
        names.index("HighPriorityHook")
        < names.index("IterTimerHook")
        < names.index("LowPriorityHook")
    )
    assert (
        "HighPriorityHook(30)" in order
        and "LowPriorityHook(70)" in order
        and "EMAHook(49)" in order
    )
    assert "HighPriorityHook ran 40 times, LowPriorityHook 40" in out  # 5 epochs of 8 iterations
    assert "High accuracy achieved!" in out  # the custom hook's validation after epoch 5
    assert "into (2, 3, 64, 96)" in out
    assert "made a SyncBatchNorm; unused parameters: ['unused.bias', 'unused.weight']" in out
    assert (work_dir / "epoch_5.pth").is_file() and glob.glob(
        str(work_dir / "best_accuracy_epoch_*.pth")
    )
