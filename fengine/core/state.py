"""The whole training state as one record, and its plain-dict form (the checkpoint payload).

:class:`TrainState` holds everything the next step depends on: the model's parameters and
buffers (flat ``dict[str, Tensor]`` named like ``named_parameters()``/``named_buffers()``), the
optimizer state, the step counter, the EMA state, the loop counters, the random-number-generator
states and every hook's own state. :meth:`TrainState.to_dict` turns it into data that
``torch.load(weights_only=True)`` accepts and :meth:`TrainState.from_dict` rebuilds it, strictly.

:class:`RngState` is a snapshot of the global generators. Reading and writing them touches the
world, so :meth:`RngState.capture` and :meth:`RngState.restore` are shell functions: nothing in
the pure core calls them.
"""

from __future__ import annotations

import os
import random
from collections.abc import Collection, Mapping
from typing import TYPE_CHECKING, Any, Generic, TypeVar

import attrs
import torch
from torch import Tensor

from fengine.core import plain

if TYPE_CHECKING:
    from fengine.core.ema import Averager, EMAState
    from fengine.core.optim import GradientTransform

__all__ = ["RngState", "TrainState"]

OptState = TypeVar("OptState")
S = TypeVar("S")


@plain.register("state.RngState")
@attrs.frozen(eq=False)
class RngState:
    """Snapshot of the global random-number generators (torch CPU and CUDA, numpy, ``random``).

    Every field is plain data (tensors, numbers, tuples), so the record survives
    ``torch.save``/``torch.load(weights_only=True)`` through :func:`fengine.core.plain.to_plain`.

    Args:
        torch_cpu: ``torch.get_rng_state()``, a ``uint8`` tensor.
        numpy: ``numpy.random.get_state()`` with the key array as an ``int64`` tensor:
            ``(name, keys, pos, has_gauss, cached_gaussian)``.
        python: ``random.getstate()``: ``(version, internal state, gauss_next)``.
        cuda: ``torch.cuda.get_rng_state_all()`` when CUDA was initialised at capture, else empty.
    """

    torch_cpu: Tensor
    numpy: tuple[str, Tensor, int, int, float]
    python: tuple[int, tuple[int, ...], float | None]
    cuda: tuple[Tensor, ...] = ()

    @classmethod
    def capture(cls) -> RngState:
        """Read the process's global generators (a shell function: it reads global state).

        Returns:
            Their current states; :meth:`restore` puts them back.
        """
        import numpy as np  # a shell dependency, kept off the pure core's import path

        name, keys, pos, has_gauss, cached = np.random.get_state(legacy=True)
        cuda: tuple[Tensor, ...] = ()
        if torch.cuda.is_available() and torch.cuda.is_initialized():  # type: ignore[no-untyped-call]
            cuda = tuple(torch.cuda.get_rng_state_all())
        return cls(
            torch_cpu=torch.get_rng_state(),
            numpy=(
                str(name),
                torch.from_numpy(np.asarray(keys, dtype=np.int64)),
                int(pos),
                int(has_gauss),
                float(cached),
            ),
            python=random.getstate(),
            cuda=cuda,
        )

    def restore(self) -> None:
        """Write these states into the process's global generators (a shell function).

        Raises:
            ValueError: CUDA states were captured but this process sees a different number of
                CUDA devices.
        """
        import numpy as np

        name, keys, pos, has_gauss, cached = self.numpy
        torch.set_rng_state(self.torch_cpu)
        np.random.set_state((name, keys.numpy().astype(np.uint32), pos, has_gauss, cached))
        random.setstate(self.python)
        if self.cuda:
            count = torch.cuda.device_count() if torch.cuda.is_available() else 0
            if count != len(self.cuda):
                raise ValueError(
                    f"RngState.cuda holds {len(self.cuda)} device states but this process sees "
                    f"{count} CUDA devices; restore on a machine with {len(self.cuda)} devices"
                )
            torch.cuda.set_rng_state_all(list(self.cuda))


@attrs.frozen(eq=False, slots=False)
class TrainState(Generic[OptState]):
    """Everything the next training step depends on, in one immutable record.

    Hot record (evolved every step): no validators, and no slots (copying the instance dictionary
    is one C-level update; see :meth:`replace`). Tensors are shared between successive states
    wherever a step leaves them unchanged; change fields with :meth:`replace`.

    Args:
        params: parameters by ``named_parameters()`` name (plain tensors, no autograd history).
        buffers: buffers by ``named_buffers()`` name (BatchNorm running statistics, ...).
        opt_state: the optimizer transform's state (hyper-parameters included).
        step: optimizer steps taken (train-step calls).
        ema: the averaged model's state, if the run keeps one.
        epoch: completed epochs (MMEngine's ``runner.epoch``).
        iter: completed training iterations (MMEngine's ``runner.iter``).
        inner_iter: index of the next iteration within the current epoch.
        rng: the generators' states, captured by the shell when it saves a checkpoint.
        hook_states: each hook's own state, under the hook's unique name.
    """

    params: dict[str, Tensor]
    buffers: dict[str, Tensor]
    opt_state: OptState
    step: int = 0
    ema: EMAState | None = None
    epoch: int = 0
    iter: int = 0
    inner_iter: int = 0
    rng: RngState | None = None
    hook_states: Mapping[str, Any] = attrs.field(factory=dict)

    @classmethod
    def create(
        cls, model: torch.nn.Module, tx: GradientTransform[S], *, averager: Averager | None = None
    ) -> TrainState[S]:
        """Copy the tensors out of ``model`` and initialise the optimizer (and EMA) state.

        Parameters and buffers are detached clones, so later steps never write into ``model``;
        tied parameters appear once, under their first name (``named_parameters()``'s rule).

        Args:
            model: the module whose tensors start the run.
            tx: an optimizer transform (``fengine.core.optim.GradientTransform``); ``tx.init(params)``
                makes the optimizer state.
            averager: an EMA averager (``fengine.core.ema``); when given, ``ema`` starts as
                ``averager.init(params, buffers)``.

        Returns:
            The state at step 0 with all counters at 0, no RNG snapshot and no hook states.

        Raises:
            TypeError: ``model`` is not an ``nn.Module`` or ``tx`` has no ``init``.
        """
        if not isinstance(model, torch.nn.Module):
            raise TypeError(
                f"model must be a torch.nn.Module, got {type(model).__qualname__} {model!r}"
            )
        if not callable(getattr(tx, "init", None)):
            raise TypeError(f"tx must be an optimizer transform with init/update, got {tx!r}")
        with torch.no_grad():
            params = {n: p.detach().clone() for n, p in model.named_parameters()}
            buffers = {n: b.detach().clone() for n, b in model.named_buffers()}
        ema = averager.init(params, buffers) if averager is not None else None
        return TrainState(params=params, buffers=buffers, opt_state=tx.init(params), ema=ema)

    def with_update(
        self, params: dict[str, Tensor], buffers: dict[str, Tensor], opt_state: OptState
    ) -> TrainState[OptState]:
        """This state after one optimizer update: new tensors and optimizer state, ``step + 1``.

        Every other field is shared. Same result as ``attrs.evolve`` at about a third of its
        cost, which matters on the hot path of small models.

        Args:
            params: the updated parameters.
            buffers: the updated buffers.
            opt_state: the updated optimizer state.

        Returns:
            The new state.
        """
        return TrainState(
            params,
            buffers,
            opt_state,
            self.step + 1,
            self.ema,
            self.epoch,
            self.iter,
            self.inner_iter,
            self.rng,
            self.hook_states,
        )

    def replace(self, **changes: Any) -> TrainState[OptState]:
        """This state with ``changes`` applied (``attrs.evolve`` without its per-call overhead).

        Args:
            **changes: new values by field name.

        Returns:
            The new state; every other field is shared with this one.

        Raises:
            TypeError: a name that is not a field (the message lists the fields).
        """
        if not changes.keys() <= _NAMES:
            check_fields("TrainState.replace()", changes, _NAMES)
        copy = _new(self.__class__)
        fields = copy.__dict__
        fields.update(self.__dict__)
        fields.update(changes)
        return copy

    def to_dict(self) -> dict[str, Any]:
        """This state as plain data for ``torch.save`` (loadable with ``weights_only=True``).

        One key per field. Records inside (optimizer, EMA, RNG and hook states) become tagged
        dicts through :func:`fengine.core.plain.to_plain`. Tensors are shared, not copied.

        Returns:
            The plain dict; :meth:`from_dict` rebuilds an equal state.
        """
        return {f.name: plain.to_plain(getattr(self, f.name)) for f in _FIELDS}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any], source: str | None = None) -> TrainState[Any]:
        """Rebuild a state from :meth:`to_dict`'s output, strictly.

        Only registered records and enums are rebuilt (:func:`fengine.core.plain.from_plain`):
        a crafted dict cannot make loading call anything.

        Args:
            data: the plain dict, e.g. from ``torch.load(path, weights_only=True)``.
            source: the file ``data`` came from, for messages.

        Returns:
            The rebuilt state.

        Raises:
            KeyError: ``data`` lacks a field or has a key that is not a field (both listed).
            TypeError: ``params``/``buffers`` are not ``str`` → tensor mappings, or a counter is
                not an int.
            UntrustedCheckpointError: ``data`` names a type that is not registered.
        """
        if not isinstance(data, Mapping):
            raise TypeError(
                f"TrainState.from_dict expects a mapping, got {type(data).__qualname__}"
            )
        names = [f.name for f in _FIELDS]
        missing = [n for n in names if n not in data]
        unknown = [k for k in data if k not in names]
        if missing or unknown:
            raise KeyError(
                f"TrainState.from_dict: missing keys {missing}, unknown keys {unknown}; "
                f"expected exactly {names}"
            )
        values = {n: plain.from_plain(data[n], n, source) for n in names}
        for name in ("params", "buffers"):
            _check_tensors(name, values[name])
        for name in ("step", "epoch", "iter", "inner_iter"):
            if isinstance(values[name], bool) or not isinstance(values[name], int):
                raise TypeError(
                    f"TrainState.from_dict: {name!r} must be an int, got {values[name]!r}"
                )
        if not isinstance(values["hook_states"], Mapping):
            raise TypeError(
                f"TrainState.from_dict: 'hook_states' must be a mapping, got {values['hook_states']!r}"
            )
        return cls(**values)

    @classmethod
    def load(cls, file: str | os.PathLike[str], map_location: Any = "cpu") -> TrainState[Any]:
        """Read a state saved with ``torch.save(state.to_dict(), file)`` (never runs code).

        Args:
            file: the file.
            map_location: as ``torch.load``'s.

        Returns:
            The rebuilt state.

        Raises:
            UntrustedCheckpointError: the file names a type that is not registered.
            Exception: as :meth:`from_dict`, or whatever ``torch.load`` raises.
        """
        return cls.from_dict(plain.load(file, map_location, decode=False), os.fspath(file))


_FIELDS = attrs.fields(TrainState)
_NAMES = dict.fromkeys(f.name for f in _FIELDS).keys()
_new = object.__new__


def check_fields(where: str, changes: Mapping[str, Any], fields: Collection[str]) -> None:
    """Raise unless every key of ``changes`` is one of ``fields`` (a record's ``replace``).

    Args:
        where: the call, for the message (``'RunState.replace()'``).
        changes: the new values by name.
        fields: the record's field names, in order.

    Raises:
        TypeError: naming the first unknown name and listing the fields.
    """
    unknown = sorted(set(changes) - set(fields))
    if unknown:
        raise TypeError(f"{where} got an unknown field {unknown[0]!r}; fields: {', '.join(fields)}")


def _check_tensors(name: str, value: Any) -> None:
    if not isinstance(value, Mapping):
        raise TypeError(
            f"TrainState.from_dict: {name!r} must be a mapping str -> Tensor, got {type(value).__qualname__}"
        )
    for key, tensor in value.items():
        if not isinstance(key, str) or not isinstance(tensor, Tensor):
            raise TypeError(
                f"TrainState.from_dict: {name}[{key!r}] must be a str -> Tensor entry, got "
                f"{type(key).__qualname__} -> {type(tensor).__qualname__}"
            )
