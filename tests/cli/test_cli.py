"""``python -m fengine`` train/test/plot end to end on the digits config with tiny settings."""

from __future__ import annotations

import glob
import json
import os
import shutil
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import torch

from fengine.cli import main
from fengine.cli.commands import write_plot
from fengine.config import Config

DIGITS = str(Path(__file__).resolve().parents[2] / "examples" / "configs" / "digits.py")
TINY = ["train_cfg.max_epochs=2", "default_hooks.logger.interval=5"]
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


@pytest.fixture(autouse=True)
def _keep_torch_threads() -> Iterator[None]:
    """The digits config sets torch's thread count; other tests in this process keep theirs."""
    threads = torch.get_num_threads()
    yield
    torch.set_num_threads(threads)


def _log_text(work_dir: Path) -> str:
    return "\n".join(Path(p).read_text() for p in sorted(glob.glob(str(work_dir / "*" / "*.log"))))


def _scalars(work_dir: Path) -> list[dict[str, Any]]:
    (path,) = glob.glob(str(work_dir / "*" / "vis_data" / "scalars.json"))
    return [json.loads(line) for line in Path(path).read_text().splitlines()]


def _load(path: Path | str) -> dict[str, Any]:
    checkpoint: dict[str, Any] = torch.load(path, weights_only=True)
    return checkpoint


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A two-epoch digits run, checkpointed every epoch."""
    work_dir = tmp_path_factory.mktemp("digits")
    assert main(["train", DIGITS, "--work-dir", str(work_dir), "--cfg-options", *TINY]) == 0
    return work_dir


@pytest.fixture(scope="module")
def resumable(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Another two-epoch run, for the resume tests.

    A resumed run inherits the CheckpointHook's record of the best checkpoint (an absolute path)
    and deletes that file when it finds a better one, as MMEngine does; so resuming changes the
    source folder, which must not be the one the other tests read.
    """
    work_dir = tmp_path_factory.mktemp("resumable")
    assert main(["train", DIGITS, "--work-dir", str(work_dir), "--cfg-options", *TINY]) == 0
    return work_dir


def test_train_writes_checkpoints_logs_scalars_and_a_plot(trained: Path) -> None:
    assert (trained / "last_checkpoint").read_text().strip() == str(trained / "epoch_2.pth")
    assert _load(trained / "epoch_1.pth")["meta"]["epoch"] == 1
    meta = _load(trained / "epoch_2.pth")["meta"]
    assert (meta["epoch"], meta["iter"]) == (2, 46)  # 1438 training images in batches of 64
    (best,) = glob.glob(str(trained / "best_accuracy_epoch_*.pth"))
    records = _scalars(trained)
    val = [r for r in records if "iter" not in r]
    assert [r["step"] for r in val] == [1, 2]
    best_epoch = max(val, key=lambda r: r["accuracy"])["step"]
    assert best.endswith(f"best_accuracy_epoch_{best_epoch}.pth")
    # max_epochs=2 and the logger's interval=5 came from --cfg-options.
    assert [r["iter"] for r in records if "iter" in r] == [5, 10, 15, 20, 28, 33, 38, 43]
    log = _log_text(trained)
    assert "eta: " in log and "Epoch(train) [2][20/23]" in log
    (run,) = [p for p in trained.iterdir() if p.is_dir()]
    plot = run / "curves.png"
    assert plot.read_bytes().startswith(PNG_MAGIC)
    assert f"plot         {plot}" in log
    assert f"scalars      {run / 'vis_data' / 'scalars.json'}" in log
    assert f"checkpoints  {trained} (last epoch_2.pth, best {os.path.basename(best)})" in log
    (saved,) = trained.glob("*.py")
    assert saved.name == f"{run.name}.py"
    saved_cfg = Config.fromfile(saved)  # the run's config, read back as a config file
    assert saved_cfg.train_cfg["max_epochs"] == 2 and saved_cfg.work_dir == str(trained)
    assert saved_cfg.model == Config.fromfile(DIGITS).model


def test_resume_from_a_path_repeats_the_original_run_bit_for_bit(
    resumable: Path, tmp_path: Path
) -> None:
    argv = [
        "train",
        DIGITS,
        "--work-dir",
        str(tmp_path),
        "--resume",
        str(resumable / "epoch_1.pth"),
    ]
    assert main([*argv, "--cfg-options", *TINY]) == 0
    assert "resumed epoch: 1, iter: 23" in _log_text(tmp_path)
    resumed, original = _load(tmp_path / "epoch_2.pth"), _load(resumable / "epoch_2.pth")
    for key in ("state_dict", "ema_state_dict"):
        assert resumed[key].keys() == original[key].keys()
        assert all(torch.equal(resumed[key][k], original[key][k]) for k in original[key])


def test_resume_without_a_path_continues_from_the_last_checkpoint(
    resumable: Path, tmp_path: Path
) -> None:
    work_dir = tmp_path / "copy"
    shutil.copytree(resumable, work_dir)
    (work_dir / "last_checkpoint").write_text(str(work_dir / "epoch_2.pth"))
    argv = ["train", DIGITS, "--work-dir", str(work_dir), "--resume", "--cfg-options", *TINY[1:]]
    assert main([*argv, "train_cfg.max_epochs=3"]) == 0
    assert f"Auto resumed from the latest checkpoint {work_dir / 'epoch_2.pth'}" in _log_text(
        work_dir
    )
    meta = _load(work_dir / "epoch_3.pth")["meta"]
    assert (meta["epoch"], meta["iter"]) == (3, 69)
    assert (work_dir / "last_checkpoint").read_text().strip() == str(work_dir / "epoch_3.pth")


def test_test_command_reproduces_the_validation_score_of_the_checkpoint(
    trained: Path, tmp_path: Path
) -> None:
    (best,) = glob.glob(str(trained / "best_accuracy_epoch_*.pth"))
    epoch = int(best.rsplit("_", 1)[1].split(".")[0])
    logged = next(
        r["accuracy"] for r in _scalars(trained) if "iter" not in r and r["step"] == epoch
    )
    assert main(["test", DIGITS, "--work-dir", str(tmp_path), "--checkpoint", best]) == 0
    log = _log_text(tmp_path)
    said = "the config has no test_dataloader/test_cfg/test_evaluator: testing on the validation data"
    assert log.count(said) == 1
    assert f"{best}: accuracy: {logged:.4f}" in log
    assert "Epoch(test) [2/2]" in log
    # An evaluation saves no checkpoint (a validation would have saved a "best" of epoch 0).
    assert not list(tmp_path.glob("*.pth"))


def test_plot_command_draws_the_chosen_curves(trained: Path, tmp_path: Path, capsys: Any) -> None:
    from matplotlib.image import imread

    out = tmp_path / "three.png"
    assert main(["plot", str(trained), "--keys", "loss,lr,val/accuracy", "--out", str(out)]) == 0
    assert capsys.readouterr().out.strip() == f"plot: {out}"
    height, width, _ = imread(str(out)).shape
    assert width > 2.5 * height  # three panels side by side
    assert main(["plot", str(trained), "--keys", "accuracy", "--out", str(out)]) == 0
    height, width, _ = imread(str(out)).shape
    assert width < 1.6 * height  # one panel


def test_train_without_matplotlib_says_how_to_get_the_plot(
    trained: Path, monkeypatch: pytest.MonkeyPatch, capsys: Any
) -> None:
    monkeypatch.setitem(sys.modules, "matplotlib", None)
    (run,) = [p for p in trained.iterdir() if p.is_dir()]
    assert write_plot(str(run)) == "not drawn: pip install 'fengine[plot]' to get one"
    assert main(["plot", str(trained)]) == 2
    assert (
        "fengine plot: error: plotting needs matplotlib: pip install 'fengine[plot]'"
        in capsys.readouterr().err
    )


def test_default_work_dir_is_named_after_the_config(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    assert (
        main(["train", DIGITS, "--cfg-options", "train_cfg.max_epochs=1", "custom_hooks=[]"]) == 0
    )
    assert (tmp_path / "work_dirs" / "digits" / "last_checkpoint").read_text().strip() == str(
        tmp_path / "work_dirs" / "digits" / "epoch_1.pth"
    )
    assert main(["test", DIGITS]) == 0  # the latest checkpoint of ./work_dirs/digits
    assert "epoch_1.pth: accuracy: " in _log_text(tmp_path / "work_dirs" / "digits")


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["train", "missing.py"], "fengine train: error: config file 'missing.py' does not exist"),
        (
            ["test", "{no_model}"],
            "defines no `model`; a config needs at least a module-level `model = dict(",
        ),
        (
            ["train", DIGITS, "--cfg-options", "max_epochs"],
            "fengine train: error: --cfg-options: 'max_epochs' is not of the form KEY=VALUE, e.g. "
            "train_cfg.max_epochs=1",
        ),
        (
            ["test", DIGITS, "--work-dir", "{empty}"],
            "no checkpoint to test: pass --checkpoint PATH",
        ),
        (["test", DIGITS, "--checkpoint", "gone.pth"], "checkpoint 'gone.pth' does not exist"),
        (["plot", "{empty}"], "fengine plot: error: no scalars under"),
        (
            ["plot", "{trained}", "--keys", "loss,acc"],
            "no curve named 'acc' in the scalars; available: lr, data_time, loss, time, val/accuracy",
        ),
    ],
)
def test_mistakes_exit_with_status_2_and_a_one_line_message(
    argv: list[str],
    message: str,
    trained: Path,
    tmp_path: Path,
    capsys: Any,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    for name in ("RANK", "WORLD_SIZE", "MASTER_ADDR", "MASTER_PORT"):
        monkeypatch.delenv(name, raising=False)
    no_model = tmp_path / "no_model.py"
    no_model.write_text("train_cfg = dict(max_epochs=1)\n")
    names = {"no_model": str(no_model), "empty": str(tmp_path), "trained": str(trained)}
    assert main([a.format(**names) for a in argv]) == 2
    err = capsys.readouterr().err
    assert message in err and err.count("\n") == 1


def test_argparse_rejects_an_unknown_launcher(capsys: Any) -> None:
    with pytest.raises(SystemExit) as exit_info:
        main(["train", DIGITS, "--launcher", "pbs"])
    assert exit_info.value.code == 2
    assert "invalid choice: 'pbs' (choose from 'none', 'pytorch', 'slurm', 'mpi')" in capsys.readouterr().err


def test_slurm_launcher_outside_srun_names_the_missing_variables(capsys: Any, monkeypatch: Any) -> None:
    for key in ("SLURM_PROCID", "SLURM_NTASKS", "SLURM_NODELIST"):
        monkeypatch.delenv(key, raising=False)
    assert main(["train", DIGITS, "--launcher", "slurm"]) == 2
    err = capsys.readouterr().err
    assert "--launcher slurm expects a process started by its launcher" in err
    assert "['SLURM_PROCID', 'SLURM_NTASKS', 'SLURM_NODELIST']" in err
