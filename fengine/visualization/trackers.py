"""Experiment-tracker backends of the Visualizer: MLflow and Weights & Biases.

Each needs its package (``pip install 'fengine[mlflow]'`` / ``'fengine[wandb]'``), imported only
when the backend first writes, so configs naming a backend load without it installed.
"""

from __future__ import annotations

import importlib
import os
import warnings
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import torch

from fengine.registry import VISBACKENDS
from fengine.visualization.vis_backend import BaseVisBackend, config_text, force_init_env

__all__ = ["MLflowVisBackend", "WandbVisBackend", "plain_config", "run_work_dir"]


def _import_tracker(module: str, backend: str) -> Any:
    try:
        return importlib.import_module(module)
    except ImportError as error:
        raise ImportError(
            f"{backend} needs the `{module}` package, which is not installed: "
            f"pip install 'fengine[{module}]'"
        ) from error


def plain_config(config: Any) -> dict[str, Any]:
    """A config as nested plain dicts and lists (``to_dict()`` if it has one)."""
    to_dict = getattr(config, "to_dict", None)
    data = to_dict() if callable(to_dict) else config

    def plain(value: Any) -> Any:
        if isinstance(value, Mapping):
            return {str(k): plain(v) for k, v in value.items()}
        if isinstance(value, (list, tuple)):
            return [plain(v) for v in value]
        return value

    if not isinstance(data, Mapping):
        raise TypeError(f"add_config expects a config or dict, got {type(config).__name__}")
    return {str(k): plain(v) for k, v in data.items()}


def _number(name: str, value: Any, backend: str) -> float | None:
    """``value`` as a float, or ``None`` (with a warning) when it is not a single number."""
    if isinstance(value, torch.Tensor) and value.numel() == 1:
        return float(value.item())
    if isinstance(value, (np.ndarray, np.generic)) and value.size == 1:
        return float(value.item())
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return float(value)
    warnings.warn(
        f"{backend}: {name!r} is a {type(value).__name__}, not a number; skipped", stacklevel=3
    )
    return None


def _numbers(scalar_dict: Mapping[str, Any], backend: str) -> dict[str, float]:
    """The entries of ``scalar_dict`` that are single numbers, as floats (``step`` left out)."""
    if not isinstance(scalar_dict, Mapping):
        raise TypeError(f"add_scalars expects a dict, got {type(scalar_dict).__name__}")
    numbers = {k: _number(k, v, backend) for k, v in scalar_dict.items() if k != "step"}
    return {k: v for k, v in numbers.items() if v is not None}


def run_work_dir(config_work_dir: str | None, save_dir: str | None) -> str | None:
    """The run's work dir: the config's ``work_dir``, else the folder holding ``last_checkpoint``
    two levels above ``save_dir`` (the Runner writes into ``<work_dir>/<timestamp>/vis_data``)."""
    if config_work_dir is not None:
        return os.path.abspath(config_work_dir)
    if save_dir is None:
        return None
    guess = os.path.dirname(os.path.dirname(os.path.abspath(save_dir)))
    return guess if os.path.isfile(os.path.join(guess, "last_checkpoint")) else None


def last_checkpoint(work_dir: str | None) -> str | None:
    """The checkpoint named by ``<work_dir>/last_checkpoint``, if that file exists."""
    if work_dir is None:
        return None
    marker = os.path.join(work_dir, "last_checkpoint")
    if not os.path.isfile(marker):
        return None
    with open(marker, encoding="utf-8") as handle:
        return handle.read().strip() or None


def _flatten(data: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    """Dotted keys for nested dicts (and for lists that hold dicts, by index)."""
    flat: dict[str, Any] = {}
    for key, value in data.items():
        name = f"{prefix}.{key}" if prefix else str(key)
        if isinstance(value, Mapping):
            flat.update(_flatten(value, name))
        elif isinstance(value, list) and any(isinstance(v, Mapping) for v in value):
            for i, item in enumerate(value):
                flat.update(
                    _flatten(item, f"{name}.{i}")
                    if isinstance(item, Mapping)
                    else {f"{name}.{i}": item}
                )
        else:
            flat[name] = value
    return flat


@VISBACKENDS.register_module()
class MLflowVisBackend(BaseVisBackend):
    """Log scalars, the config, images and the final checkpoint path to an MLflow run.

    By default the run goes to a local store under ``save_dir``: the database
    ``<save_dir>/mlflow.db`` (``tracking_uri=sqlite:///<save_dir>/mlflow.db``; MLflow 3 no longer
    accepts plain-file stores by default) and the artifacts in ``<save_dir>/artifacts``; pass
    ``tracking_uri`` for a tracking server or another store. Scalars
    are metrics at their ``step``; the config's flattened keys are params (``tracked_config_keys``
    limits them to those top-level keys) and its text the artifact ``config.py``. :meth:`close`
    uploads the work dir's files ending in ``artifact_suffix``, records the path named by
    ``<work_dir>/last_checkpoint`` as the tag ``last_checkpoint`` and ends the run.

    Args:
        save_dir: folder of the local file store (created on first write).
        exp_name: experiment name (default ``'Default'``), created if absent.
        run_name: the run's name.
        tags: tags set on the run.
        params: params logged on the run.
        tracking_uri: MLflow tracking URI; default: the local database under ``save_dir``.
        artifact_suffix: file endings uploaded from the work dir at :meth:`close`.
        tracked_config_keys: the top-level config keys logged as params (default: all).
        artifact_location: where a newly created experiment stores artifacts (default with the
            local store: ``<save_dir>/artifacts``).
    """

    def __init__(
        self,
        save_dir: str,
        exp_name: str | None = None,
        run_name: str | None = None,
        tags: Mapping[str, Any] | None = None,
        params: Mapping[str, Any] | None = None,
        tracking_uri: str | None = None,
        artifact_suffix: str | Sequence[str] = (".json", ".log", ".py", "yaml"),
        tracked_config_keys: Sequence[str] | None = None,
        artifact_location: str | None = None,
    ) -> None:
        super().__init__(save_dir)
        self._exp_name = exp_name or "Default"
        self._run_name = run_name
        self._tags = dict(tags or {})
        self._params = dict(params or {})
        self._tracking_uri = tracking_uri
        self._artifact_suffix = (
            (artifact_suffix,) if isinstance(artifact_suffix, str) else tuple(artifact_suffix)
        )
        self._tracked_config_keys = tracked_config_keys
        self._artifact_location = artifact_location
        self._work_dir: str | None = None
        self._mlflow: Any = None
        self.run_id: str | None = None

    def _init_env(self) -> None:
        mlflow = _import_tracker("mlflow", "MLflowVisBackend")
        if self._tracking_uri is None:
            if self._save_dir is None:
                raise ValueError("MLflowVisBackend needs a `save_dir` or a `tracking_uri`")
            os.makedirs(self._save_dir, exist_ok=True)
            root = os.path.abspath(self._save_dir)
            self._tracking_uri = f"sqlite:///{os.path.join(root, 'mlflow.db')}"
            if self._artifact_location is None:
                self._artifact_location = "file://" + os.path.join(root, "artifacts")
        mlflow.set_tracking_uri(self._tracking_uri)
        if mlflow.get_experiment_by_name(self._exp_name) is None:
            mlflow.create_experiment(self._exp_name, artifact_location=self._artifact_location)
        mlflow.set_experiment(self._exp_name)
        run = mlflow.start_run(run_name=self._run_name, tags=self._tags or None)
        self.run_id = run.info.run_id
        if self._params:
            mlflow.log_params(self._params)
        self._mlflow = mlflow

    @property
    @force_init_env
    def experiment(self) -> Any:
        """The ``mlflow`` module, its active run being this backend's."""
        return self._mlflow

    @force_init_env
    def add_config(self, config: Any, **kwargs: Any) -> None:
        """Log the config's flattened keys as params and its text as ``config.py``.

        Raises:
            KeyError: a ``tracked_config_keys`` entry is not in the config.
        """
        data = plain_config(config)
        work_dir = data.get("work_dir")
        self._work_dir = work_dir if isinstance(work_dir, str) else None
        if self._tracked_config_keys is not None:
            missing = [k for k in self._tracked_config_keys if k not in data]
            if missing:
                raise KeyError(
                    f"MLflowVisBackend: tracked_config_keys {missing} are not in the config; "
                    f"it has {sorted(data)}"
                )
            data = {k: data[k] for k in self._tracked_config_keys}
        self._mlflow.log_params({k: str(v) for k, v in _flatten(data).items()})
        self._mlflow.log_text(config_text(config), "config.py")

    @force_init_env
    def add_image(self, name: str, image: np.ndarray, step: int = 0, **kwargs: Any) -> None:
        """Log an RGB image as the artifact ``name`` (``.png`` added if it has no extension)."""
        self._mlflow.log_image(image, name if os.path.splitext(name)[1] else f"{name}.png")

    @force_init_env
    def add_scalar(self, name: str, value: Any, step: int = 0, **kwargs: Any) -> None:
        """Log one metric at ``step`` (a value that is not one number is skipped with a warning)."""
        number = _number(name, value, "MLflowVisBackend")
        if number is not None:
            self._mlflow.log_metric(name, number, step=step)

    @force_init_env
    def add_scalars(
        self,
        scalar_dict: Mapping[str, Any],
        step: int = 0,
        file_path: str | None = None,
        **kwargs: Any,
    ) -> None:
        """Log several metrics at ``step`` (``file_path`` is for local files and is ignored).

        Raises:
            TypeError: ``scalar_dict`` is not a dict.
        """
        metrics = _numbers(scalar_dict, "MLflowVisBackend")
        if metrics:
            self._mlflow.log_metrics(metrics, step=int(scalar_dict.get("step", step)))

    def _work_dir_artifacts(self, work_dir: str | None) -> list[str]:
        """The work dir's files ending in ``artifact_suffix``, listed before any upload.

        The local artifact store (``<save_dir>/artifacts`` by default, inside the work dir of a
        Runner's run) is left out: its files are the uploads themselves.
        """
        if work_dir is None:
            return []
        location = self._artifact_location or ""
        store = os.path.abspath(location[len("file://"):]) if location.startswith("file://") else None
        found = []
        for root, dirs, files in os.walk(work_dir):
            dirs[:] = sorted(d for d in dirs if os.path.abspath(os.path.join(root, d)) != store)
            found += [os.path.join(root, f) for f in sorted(files) if f.endswith(self._artifact_suffix)]
        return found

    def close(self) -> None:
        """Upload the work dir's artifacts, tag the last checkpoint and end the run."""
        if self._mlflow is None:
            return
        work_dir = run_work_dir(self._work_dir, self._save_dir)
        for path in self._work_dir_artifacts(work_dir):
            assert work_dir is not None
            relative = os.path.relpath(os.path.dirname(path), work_dir)
            self._mlflow.log_artifact(path, None if relative == "." else relative)
        checkpoint = last_checkpoint(work_dir)
        if checkpoint is not None:
            self._mlflow.set_tag("last_checkpoint", checkpoint)
        self._mlflow.end_run()
        self._mlflow = None
        self._env_initialized = False


@VISBACKENDS.register_module()
class WandbVisBackend(BaseVisBackend):
    """Log scalars, the config, images and the final checkpoint path to a Weights & Biases run.

    ``wandb.init(**init_kwargs)`` with ``dir=save_dir`` unless ``init_kwargs`` names one;
    ``WANDB_MODE=offline`` (or ``init_kwargs=dict(mode='offline')``) keeps the run on disk under
    ``<save_dir>/wandb``. As in MMEngine, scalars go through ``wandb.log`` without W&B's ``step``
    (W&B needs it to grow, while a run logs validation at epochs between training iterations).
    :meth:`close` stores the path named by ``<work_dir>/last_checkpoint`` in the run summary as
    ``last_checkpoint`` and finishes the run.

    Args:
        save_dir: the folder W&B writes into.
        init_kwargs: arguments of ``wandb.init`` (``project``, ``name``, ``mode``, ...).
        define_metric_cfg: ``{metric: summary}`` or a list of ``wandb.define_metric`` kwargs.
        commit: passed to ``wandb.log``.
        log_code_name: name of the code artifact logged with the config.
        watch_kwargs: arguments of ``wandb.watch`` for :meth:`add_graph`.

    Raises:
        TypeError: ``define_metric_cfg`` is neither a dict nor a list of dicts.
    """

    def __init__(
        self,
        save_dir: str,
        init_kwargs: Mapping[str, Any] | None = None,
        define_metric_cfg: Mapping[str, str] | Sequence[Mapping[str, Any]] | None = None,
        commit: bool | None = True,
        log_code_name: str | None = None,
        watch_kwargs: Mapping[str, Any] | None = None,
    ) -> None:
        if define_metric_cfg is not None and not (
            isinstance(define_metric_cfg, Mapping)
            or (
                isinstance(define_metric_cfg, Sequence)
                and all(isinstance(m, Mapping) for m in define_metric_cfg)
            )
        ):
            raise TypeError(
                "WandbVisBackend: `define_metric_cfg` must be a dict {metric: summary} or a list "
                f"of define_metric kwargs, got {define_metric_cfg!r}"
            )
        super().__init__(save_dir)
        self._init_kwargs = dict(init_kwargs or {})
        self._define_metric_cfg = define_metric_cfg
        self._commit = commit
        self._log_code_name = log_code_name
        self._watch_kwargs = dict(watch_kwargs or {})
        self._work_dir: str | None = None
        self._wandb: Any = None
        self.run: Any = None

    def _init_env(self) -> None:
        wandb = _import_tracker("wandb", "WandbVisBackend")
        if self._save_dir is not None:
            os.makedirs(self._save_dir, exist_ok=True)
            self._init_kwargs.setdefault("dir", self._save_dir)
        self.run = wandb.init(**self._init_kwargs)
        if isinstance(self._define_metric_cfg, Mapping):
            for metric, summary in self._define_metric_cfg.items():
                self.run.define_metric(metric, summary=summary)
        elif self._define_metric_cfg is not None:
            for metric_cfg in self._define_metric_cfg:
                self.run.define_metric(**metric_cfg)
        self._wandb = wandb

    @property
    @force_init_env
    def experiment(self) -> Any:
        """The ``wandb`` module (``wandb.Table``, ``wandb.log`` go to this backend's run)."""
        return self._wandb

    @force_init_env
    def add_config(self, config: Any, **kwargs: Any) -> None:
        """Store the config in the run's config and log the code (``log_code_name``)."""
        data = plain_config(config)
        work_dir = data.get("work_dir")
        self._work_dir = work_dir if isinstance(work_dir, str) else None
        allow = bool(self._init_kwargs.get("allow_val_change", False))
        self.run.config.update(data, allow_val_change=allow)
        self.run.log_code(name=self._log_code_name)

    @force_init_env
    def add_graph(self, model: torch.nn.Module, data_batch: Any = None, **kwargs: Any) -> None:
        """``wandb.watch(model, **watch_kwargs)``."""
        self.run.watch(model, **self._watch_kwargs)

    @force_init_env
    def add_image(self, name: str, image: np.ndarray, step: int = 0, **kwargs: Any) -> None:
        """Log an RGB image."""
        self.run.log({name: self._wandb.Image(image)}, commit=self._commit)

    @force_init_env
    def add_scalar(self, name: str, value: Any, step: int = 0, **kwargs: Any) -> None:
        """Log one scalar (a value that is not one number is skipped with a warning)."""
        number = _number(name, value, "WandbVisBackend")
        if number is not None:
            self.run.log({name: number}, commit=self._commit)

    @force_init_env
    def add_scalars(
        self,
        scalar_dict: Mapping[str, Any],
        step: int = 0,
        file_path: str | None = None,
        **kwargs: Any,
    ) -> None:
        """Log several scalars in one W&B row.

        Raises:
            TypeError: ``scalar_dict`` is not a dict.
        """
        row = _numbers(scalar_dict, "WandbVisBackend")
        if row:
            self.run.log(row, commit=self._commit)

    def close(self) -> None:
        """Record the last checkpoint in the run summary and finish the run."""
        if self.run is None:
            return
        checkpoint = last_checkpoint(run_work_dir(self._work_dir, self._save_dir))
        if checkpoint is not None:
            self.run.summary["last_checkpoint"] = checkpoint
        self.run.finish()
        self.run = None
        self._env_initialized = False
