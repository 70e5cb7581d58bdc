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
    runs = glob.glob(str(tmp_path / "vis_data" / "wandb" / "offline-run-*" / "run-*.wandb"))
    assert len(runs) == 1 and os.path.getsize(runs[0]) > 0
    with open(runs[0], "rb") as handle:
        data = handle.read()
    for text in ("loss_scalar_key", "acc_scalar_key", "NetTypeName", str(work_dir / "epoch_2.pth")):
        assert text.encode() in data, text
