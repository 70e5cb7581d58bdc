"""MLflowVisBackend and WandbVisBackend, each against its real package (skipped when absent)."""

from __future__ import annotations

import builtins
import glob
import os

import pytest
import torch

from fengine.registry import VISBACKENDS
from fengine.visualization import MLflowVisBackend, WandbVisBackend


def _fake_work_dir(tmp_path):
    work_dir = tmp_path / "work"
    work_dir.mkdir()
    (work_dir / "last_checkpoint").write_text(str(work_dir / "epoch_2.pth"))
    (work_dir / "run.log").write_text("log line\n")
    return work_dir


@pytest.mark.parametrize(
    ("backend", "module"), [(MLflowVisBackend, "mlflow"), (WandbVisBackend, "wandb")]
)
def test_missing_package_names_the_extra(monkeypatch, tmp_path, backend, module):
    real_import = builtins.__import__

    def refuse(name, *args, **kwargs):
        if name == module or name.startswith(module + "."):
            raise ImportError(f"No module named {name!r}")
        return real_import(name, *args, **kwargs)

    monkeypatch.delitem(__import__("sys").modules, module, raising=False)
    monkeypatch.setattr(builtins, "__import__", refuse)
    with pytest.raises(ImportError, match=rf"pip install 'fengine\[{module}\]'"):
        backend(str(tmp_path)).add_scalar("loss", 1.0)


def test_both_are_registered():
    assert VISBACKENDS.get("MLflowVisBackend") is MLflowVisBackend
    assert VISBACKENDS.get("WandbVisBackend") is WandbVisBackend


def test_mlflow_run_reads_back_every_scalar_step_param_and_checkpoint(tmp_path):
    pytest.importorskip("mlflow")
    from mlflow.tracking import MlflowClient

    work_dir = _fake_work_dir(tmp_path)
    backend = MLflowVisBackend(
        str(tmp_path / "vis_data"),
        exp_name="exp",
        run_name="run",
        tags={"team": "a"},
        params={"seed": 0},
    )
    logged = {"loss": [], "acc": []}
    for step in range(1, 6):
        loss = 1.0 / step
        backend.add_scalar("loss", torch.tensor(loss), step=step)
        logged["loss"].append((step, loss))
        if step % 2 == 0:
            backend.add_scalars({"acc": 0.1 * step, "note": "text"}, step=step)
            logged["acc"].append((step, 0.1 * step))
    with pytest.warns(UserWarning, match="'note' is a str"):
        backend.add_scalars({"note": "text"}, step=9)
    config = {
        "work_dir": str(work_dir),
        "model": {"type": "Net", "widths": [8, 16]},
        "custom_hooks": [{"type": "EMAHook", "momentum": 0.01}],
    }
    backend.add_config(config)
    run_id = backend.run_id
    backend.close()

    client = MlflowClient(f"sqlite:///{tmp_path / 'vis_data' / 'mlflow.db'}")
    run = client.get_run(run_id)
    for name, expected in logged.items():
        history = sorted((m.step, m.value) for m in client.get_metric_history(run_id, name))
        assert [step for step, _ in history] == [step for step, _ in expected]
        assert [value for _, value in history] == pytest.approx([v for _, v in expected], rel=1e-6)
    assert client.get_metric_history(run_id, "note") == []
    assert run.info.run_name == "run" and run.data.tags["team"] == "a"
    assert run.data.params == {
        "seed": "0",
        "work_dir": str(work_dir),
        "model.type": "Net",
        "model.widths": "[8, 16]",
        "custom_hooks.0.type": "EMAHook",
        "custom_hooks.0.momentum": "0.01",
    }
    assert run.data.tags["last_checkpoint"] == str(work_dir / "epoch_2.pth")
    assert sorted(a.path for a in client.list_artifacts(run_id)) == ["config.py", "run.log"]
    assert run.info.status == "FINISHED"


def test_mlflow_tracked_config_keys_must_exist(tmp_path):
    pytest.importorskip("mlflow")
    backend = MLflowVisBackend(str(tmp_path), tracked_config_keys=["model", "missing"])
    with pytest.raises(KeyError, match="'missing'"):
        backend.add_config({"model": {"type": "Net"}})
    backend.close()


def _flush_wandb():
    """Wait for W&B's service to write the finished run's file: ``finish()`` returns once the
    run has ended, while the file may still be written (read at once, it can hold only its header)."""
    import wandb

    wandb.teardown()


def test_wandb_offline_run_holds_scalars_config_and_checkpoint(tmp_path, monkeypatch):
    pytest.importorskip("wandb")
    monkeypatch.setenv("WANDB_MODE", "offline")
    monkeypatch.setenv("WANDB_SILENT", "true")
    monkeypatch.chdir(tmp_path)
    work_dir = _fake_work_dir(tmp_path)
    backend = WandbVisBackend(
        str(tmp_path / "vis_data"),
        init_kwargs={"project": "fengine-test"},
        define_metric_cfg={"acc": "max"},
    )
    backend.add_scalar("loss_scalar_key", torch.tensor(0.5))
    backend.add_scalars({"acc_scalar_key": 0.75, "loss_scalar_key": 0.25})
    backend.add_config({"work_dir": str(work_dir), "model": {"type": "NetTypeName"}})
    assert backend.run.config["model"] == {"type": "NetTypeName"}
    assert dict(backend.run.summary)["acc_scalar_key"] == 0.75
    backend.close()
    _flush_wandb()
    runs = glob.glob(str(tmp_path / "vis_data" / "wandb" / "offline-run-*" / "run-*.wandb"))
    assert len(runs) == 1 and os.path.getsize(runs[0]) > 0
    with open(runs[0], "rb") as handle:
        data = handle.read()
    for text in ("loss_scalar_key", "acc_scalar_key", "NetTypeName", str(work_dir / "epoch_2.pth")):
        assert text.encode() in data, text


def _trained_with(backend: dict, tmp_path):
    """A toy Runner's 2-epoch run logging to the local backend and ``backend``; its scalars.json rows."""
    import json
    import sys
    from pathlib import Path

    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "runner"))
    from runner_toys import toy_kwargs

    from fengine.runner import Runner

    vis = {"type": "Visualizer", "name": f"trackers-{backend['type']}", "vis_backends": [{"type": "LocalVisBackend"}, backend]}
    runner = Runner(**toy_kwargs(tmp_path / "work", visualizer=vis, default_hooks={"logger": {"type": "LoggerHook", "interval": 1}}))
    runner.train()
    rows = [json.loads(line) for line in (Path(runner.log_dir) / "vis_data" / "scalars.json").read_text().splitlines()]
    return runner, rows


def test_a_runners_run_reaches_mlflow_whole(tmp_path):
    """Every scalar the run logged (training and validation), its config and final checkpoint."""
    pytest.importorskip("mlflow")
    from mlflow.tracking import MlflowClient

    runner, rows = _trained_with({"type": "MLflowVisBackend", "exp_name": "toy", "run_name": "two-epochs"}, tmp_path)
    (backend,) = [b for b in runner.visualizer._vis_backends.values() if isinstance(b, MLflowVisBackend)]
    store = os.path.join(runner.log_dir, "vis_data")
    client = MlflowClient(f"sqlite:///{os.path.join(store, 'mlflow.db')}")
    run_id = client.search_runs([client.get_experiment_by_name("toy").experiment_id])[0].info.run_id
    expected: dict[str, list[tuple[int, float]]] = {}
    for row in rows:
        for name, value in row.items():
            if name != "step":
                expected.setdefault(name, []).append((row["step"], value))
    assert {"loss", "lr", "acc"} <= expected.keys() and len(rows) == 10  # 8 iterations, 2 validations
    for name, points in expected.items():  # validation's time keys share steps with training's
        history = sorted((m.step, m.value) for m in client.get_metric_history(run_id, name))
        assert [s for s, _ in history] == [s for s, _ in sorted(points)], name
        assert [v for _, v in history] == pytest.approx([v for _, v in sorted(points)], rel=1e-6), name
    run = client.get_run(run_id)
    assert run.data.params["train_cfg.max_epochs"] == "2" and run.data.params["work_dir"] == str(tmp_path / "work")
    assert run.data.tags["last_checkpoint"] == str(tmp_path / "work" / "epoch_2.pth")
    uploaded = {a.path for a in client.list_artifacts(run_id)}
    assert {"config.py", f"{runner.timestamp}.py", runner.timestamp} <= uploaded
    assert run.info.status == "FINISHED" and backend.run_id == run_id


def test_a_runners_run_reaches_an_offline_wandb_run(tmp_path, monkeypatch):
    pytest.importorskip("wandb")
    monkeypatch.setenv("WANDB_MODE", "offline")
    monkeypatch.setenv("WANDB_SILENT", "true")
    monkeypatch.chdir(tmp_path)
    runner, rows = _trained_with({"type": "WandbVisBackend", "init_kwargs": {"project": "fengine-toy"}}, tmp_path)
    _flush_wandb()
    (path,) = glob.glob(os.path.join(runner.log_dir, "vis_data", "wandb", "offline-run-*", "run-*.wandb"))
    with open(path, "rb") as handle:
        data = handle.read()
    names = {name for row in rows for name in row if name != "step"}
    assert {"loss", "lr", "acc"} <= names
    for text in (*names, "max_epochs", str(tmp_path / "work" / "epoch_2.pth")):
        assert text.encode() in data, text
