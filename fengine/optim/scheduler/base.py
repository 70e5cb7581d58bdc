"""The parameter-scheduler façade: MMEngine's stepping and bookkeeping over a pure schedule.

A scheduler owns one :class:`fengine.core.schedule.Schedule` per parameter group and two counters
(``_global_step``: how often :meth:`_ParamScheduler.step` ran; ``last_step``: how many of those fell
in the window). Each in-window step writes ``schedule.update(group[name], base, last_step)`` into
the optimizer's ``param_groups`` — the same chained recursion as MMEngine, so several schedulers
on one parameter compose exactly as there.
"""

from __future__ import annotations

import functools
import warnings
import weakref
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from typing import Any, ClassVar, Protocol

import attrs

from fengine.core import schedule as fs

INF = fs.INF
_WINDOW = ("begin", "end", "by_epoch")
_ORDER_DOC = "https://pytorch.org/docs/stable/optim.html#how-to-adjust-learning-rate"


class ParamGroupsOwner(Protocol):
    """Anything with ``param_groups``: a ``torch.optim.Optimizer`` or an ``OptimWrapper``."""

    @property
    def param_groups(self) -> list[dict[str, Any]]: ...


def check_optimizer(optimizer: Any) -> list[dict[str, Any]]:
    """The optimizer's ``param_groups``, or a ``TypeError`` saying what is accepted."""
    groups = getattr(optimizer, "param_groups", None)
    if not isinstance(groups, list) or not all(isinstance(g, dict) for g in groups):
        raise TypeError(
            "optimizer should be an Optimizer: a torch.optim.Optimizer or an OptimWrapper (an object whose "
            f"param_groups is a list of dicts), got {type(optimizer).__name__}"
        )
    return groups


def init_base_values(optimizer: Any, param_name: str, last_step: int) -> list[float]:
    """Record ``initial_<param_name>`` in each group on a fresh start; read it when resuming.

    Raises:
        ValueError: ``last_step`` is not an int >= -1.
        KeyError: a group lacks ``param_name``, or (resuming) ``initial_<param_name>``.
    """
    if isinstance(last_step, bool) or not isinstance(last_step, int) or last_step < -1:
        raise fs.ScheduleError(f"last_step must be an int >= -1, got {last_step!r}")
    initial = f"initial_{param_name}"
    for i, group in enumerate(check_optimizer(optimizer)):
        if param_name not in group:
            raise KeyError(
                f"param_groups[{i}] has no {param_name!r} to schedule (keys: {sorted(group)})"
            )
        if last_step == -1:
            group.setdefault(initial, group[param_name])
        elif initial not in group:
            raise KeyError(
                f"param {initial!r} is not specified in param_groups[{i}]; resuming with "
                f"last_step={last_step} needs the optimizer state saved with its schedulers"
            )
    return [group[initial] for group in optimizer.param_groups]


def count_steps(optimizer: Any) -> None:
    """Make ``optimizer.step`` count its calls in ``optimizer._global_step`` (from ``-1``).

    What MMEngine and ``torch.optim.lr_scheduler`` do, so a scheduler stepped before its optimizer
    can warn. A step already counting (and its count) is left as it is; an object without a bound ``step`` (a
    bare ``param_groups`` holder) is left alone.
    """
    method = getattr(optimizer, "step", None)
    if method is None or getattr(method, "_with_counter", False):
        return  # a second scheduler on the optimizer shares its count
    func = getattr(method, "__func__", None)
    owner = getattr(method, "__self__", None)
    if func is None or owner is None:
        return
    owner_ref = weakref.ref(owner)  # no cycle between the optimizer and its own step
    cls = type(owner)

    @functools.wraps(func)
    def counted(*args: Any, **kwargs: Any) -> Any:
        instance = owner_ref()
        count_step(instance)
        return func.__get__(instance, cls)(*args, **kwargs)

    counted._with_counter = True  # type: ignore[attr-defined]
    optimizer.step = counted
    optimizer._global_step = -1


def count_step(optimizer: Any) -> None:
    """Count one step of ``optimizer`` if :func:`count_steps` made it count (else do nothing).

    The counting ``step`` calls it; so does the runner's pure update, which steps the
    optimizer's record without calling ``step``.
    """
    if hasattr(optimizer, "_global_step"):
        optimizer._global_step += 1


def warn_if_stepped_before_optimizer(optimizer: Any) -> None:
    """Warn, as MMEngine does, when a scheduler's first step comes before the optimizer's."""
    step: Callable[..., Any] | None = getattr(optimizer, "step", None)
    if step is None or not hasattr(optimizer, "_global_step"):
        return
    if not getattr(step, "_with_counter", False):
        warnings.warn(
            "Seems like `optimizer.step()` has been overridden after parameter value scheduler "
            "initialization. Please, make sure to call `optimizer.step()` before "
            f"`scheduler.step()`. See more details at {_ORDER_DOC}",
            UserWarning,
            stacklevel=3,
        )
    elif optimizer._global_step < 0:
        warnings.warn(
            "Detected call of `scheduler.step()` before `optimizer.step()`: call "
            "`optimizer.step()` first, else the first value of the parameter value schedule is "
            f"skipped. See more details at {_ORDER_DOC}",
            UserWarning,
            stacklevel=3,
        )


class _ParamScheduler:
    """Base of every scheduler: steps a schedule over the optimizer's ``param_groups``.

    Built schedulers take one step at once (``_global_step`` 0), as MMEngine's do, so the first
    value of the schedule is in place before training starts.

    Args:
        optimizer: a ``torch.optim.Optimizer`` or an ``OptimWrapper``.
        param_name: the ``param_groups`` key to schedule (``'lr'``, ``'momentum'``, ...).
        schedule: the schedule, or one per parameter group (a subclass that computes its own
            values passes none and overrides :meth:`_get_value`).
        last_step: steps already taken in the window (``-1``: a fresh start).
        verbose: print each new value.
        convert_to_iter_based: convert an epoch-based schedule to iterations.
        epoch_length: iterations per epoch, for the conversion.

    Raises:
        TypeError: ``optimizer`` has no ``param_groups``.
        ValueError: bad ``last_step``, conversion without ``epoch_length`` or of
            ``by_epoch=False``, or one schedule per group with the wrong number of groups.
        KeyError: a group lacks ``param_name`` (or its initial value when resuming).
    """

    need_val_args: ClassVar[bool] = False

    def __init__(
        self,
        optimizer: Any,
        param_name: str,
        schedule: fs.Schedule | Sequence[fs.Schedule] | None = None,
        *,
        last_step: int = -1,
        verbose: bool = False,
        convert_to_iter_based: bool = False,
        epoch_length: int | None = None,
    ) -> None:
        groups = check_optimizer(optimizer)
        if schedule is None:
            raise NotImplementedError(
                f"{type(self).__name__} gives no schedule: pass one (a fengine.core.schedule "
                "record) or use a concrete scheduler such as StepParamScheduler"
            )
        schedules = (
            [schedule] * len(groups) if isinstance(schedule, fs.Schedule) else list(schedule)
        )
        if len(schedules) != len(groups):
            raise fs.ScheduleError(
                f"expected one schedule per param group ({len(groups)}), got {len(schedules)}"
            )
        if convert_to_iter_based:
            if epoch_length is None:
                raise fs.ScheduleError(
                    f"convert_to_iter_based=True needs epoch_length (iterations per epoch) "
                    f"for {type(self).__name__}"
                )
            schedules = [fs.convert_to_iter_based(s, epoch_length) for s in schedules]
        self.optimizer = optimizer
        self.param_name = param_name
        self._schedules = tuple(schedules)
        self.base_values = init_base_values(optimizer, param_name, last_step)
        self.last_step = last_step
        self.verbose = verbose
        self._global_step = -1
        self._last_value: list[float] = []
        count_steps(optimizer)
        self.step()

    @classmethod
    def build_iter_from_epoch(
        cls, *args: Any, epoch_length: int | None = None, **kwargs: Any
    ) -> Any:
        """Build an iteration-based scheduler from an epoch-based config (MMEngine's API).

        Equivalent to ``cls(*args, convert_to_iter_based=True, epoch_length=epoch_length,
        **kwargs)``: the window and step-counted hyper-parameters are multiplied by
        ``epoch_length`` (see :func:`fengine.core.schedule.convert_to_iter_based`).
        """
        return cls(*args, convert_to_iter_based=True, epoch_length=epoch_length, **kwargs)

    @property
    def begin(self) -> int:
        """First step of the window."""
        return self._schedules[0].begin

    @property
    def end(self) -> int:
        """First step after the window."""
        return self._schedules[0].end

    @property
    def by_epoch(self) -> bool:
        """Whether this scheduler steps per epoch (else per iteration)."""
        return self._schedules[0].by_epoch

    @property
    def schedules(self) -> tuple[fs.Schedule, ...]:
        """The pure schedule of each parameter group."""
        return self._schedules

    def __getattr__(self, name: str) -> Any:
        # MMEngine exposes hyper-parameters as attributes (``scheduler.gamma``).
        schedules = self.__dict__.get("_schedules")
        if schedules and name in attrs.fields_dict(type(schedules[0])):
            return getattr(schedules[0], name)
        raise AttributeError(f"{type(self).__name__!r} object has no attribute {name!r}")

    def step(self) -> None:
        """Advance one epoch or iteration; inside the window, write the next values."""
        if self._global_step == 0:
            warn_if_stepped_before_optimizer(self.optimizer)
        self._global_step += 1
        if self.begin <= self._global_step < self.end:
            self._advance()
        self._last_value = [group[self.param_name] for group in self.optimizer.param_groups]

    def _advance(self) -> None:
        """Take the next in-window step: write each group's next value."""
        groups = self.optimizer.param_groups
        self.last_step += 1
        values = [
            schedule.update(group[self.param_name], base, self.last_step)
            for schedule, group, base in zip(self._schedules, groups, self.base_values)
        ]
        for i, (group, value) in enumerate(zip(groups, values)):
            group[self.param_name] = value
            self.print_value(self.verbose, i, value)

    def get_last_value(self) -> list[float]:
        """The value of each parameter group after the latest step."""
        return self._last_value

    def print_value(self, is_verbose: bool, group: int, value: float) -> None:
        """Print a group's new value when ``is_verbose``."""
        if is_verbose:
            print(f"Adjusting parameter value of group {group} to {value:.4e}.")

    def state_dict(self) -> dict[str, Any]:
        """Counters, window and hyper-parameters, under MMEngine's attribute names."""
        return {
            "param_name": self.param_name,
            "base_values": list(self.base_values),
            "last_step": self.last_step,
            "_global_step": self._global_step,
            "_last_value": list(self._last_value),
            "verbose": self.verbose,
            **self._hyper_params(),
        }

    def load_state_dict(self, state_dict: Mapping[str, Any]) -> None:
        """Restore what :meth:`state_dict` saved (an MMEngine scheduler state dict works too).

        As in MMEngine, saved hyper-parameters and window replace the constructed ones; keys
        this scheduler does not use (MMEngine's derived attributes) are ignored. Resuming a run
        uses :meth:`resume_state_dict` instead.
        """
        for key in ("param_name", "verbose"):
            if key in state_dict:
                setattr(self, key, state_dict[key])
        self._load_counters(state_dict)
        self._load_hyper_params(state_dict)

    def resume_state_dict(self, state_dict: Mapping[str, Any]) -> list[tuple[str, Any, Any]]:
        """Take a saved state's counters; keep this scheduler's own hyper-parameters and window.

        A schedule is a pure function of its counters, so a scheduler built from the current
        config continues the saved run from the saved step: ``last_step``, ``_global_step``,
        ``base_values``, ``_last_value`` (and what a schedule accumulates, such as
        ReduceOnPlateau's best value and bad epochs) come from ``state_dict``, everything else
        from the constructor; steps the saved run took outside its window but inside this one
        are then taken (:meth:`_catch_up`), so the values equal an uninterrupted run's under this
        config. MMEngine's saved form is read too.

        Args:
            state_dict: a :meth:`state_dict` output, fengine's or MMEngine's.

        Returns:
            ``(key, saved, used)`` for each hyper-parameter (window included) whose saved value
            differs from this scheduler's, in this scheduler's key order.
        """
        used = _effective(self._hyper_params())
        saved = _effective({k: _plain(k, state_dict[k]) for k in used if k in state_dict})
        changed = [(k, saved[k], used[k]) for k in used if k in saved and saved[k] != used[k]]
        self._load_counters(state_dict)
        self._catch_up()
        return changed

    def _catch_up(self) -> None:
        """Count the saved steps under this scheduler's window, taking those the saved run skipped.

        A window the config extends (``end`` following a larger ``max_epochs``) holds steps that
        the saved run took outside its window: they are taken now, in order, from the saved
        values, as an uninterrupted run took them. A window that shrank takes nothing more.
        """
        in_window = min(self._global_step, self.end - 1) - self.begin + 1
        taken = max(in_window, 0) - 1
        if self.last_step > taken:
            self.last_step = taken
        while self.last_step < taken:
            self._advance()
        self._last_value = [group[self.param_name] for group in self.optimizer.param_groups]

    #: The saved keys :meth:`resume_state_dict` takes (with :meth:`_load_counters`).
    _counter_keys: ClassVar[tuple[str, ...]] = ("base_values", "last_step", "_global_step")

    def _load_counters(self, state_dict: Mapping[str, Any]) -> None:
        for key in self._counter_keys:
            if key in state_dict:
                setattr(self, key, state_dict[key])
        if getattr(self.optimizer, "_global_step", 0) < 0:
            # A restored schedule continues a run whose optimizer has stepped: no order warning.
            self.optimizer._global_step = 0
        if "_last_value" in state_dict:
            self._last_value = list(state_dict["_last_value"])

    def _hyper_params(self) -> dict[str, Any]:
        fields = attrs.asdict(self._schedules[0], recurse=False)
        return {"param_name": self.param_name, **{
            k: list(v) if isinstance(v, tuple) else v for k, v in fields.items()
        }}  # fmt: skip

    def _load_hyper_params(self, state_dict: Mapping[str, Any]) -> None:
        names = attrs.fields_dict(type(self._schedules[0]))
        changes = {k: _plain(k, v) for k, v in state_dict.items() if k in names}
        self._schedules = tuple(attrs.evolve(s, **changes) for s in self._schedules)


def _effective(params: Mapping[str, Any]) -> dict[str, Any]:
    """Hyper-parameters with the defaults a family derives filled in, for comparing saved states.

    MMEngine saves ``T_max``/``total_steps`` as ``end - begin`` and a cosine's absent ``eta_min``
    as ``0.0``, where fengine's records keep ``None``.
    """
    out = dict(params)
    span = out["end"] - out["begin"] if "end" in out and "begin" in out else None
    for key in ("T_max", "total_steps"):
        if key in out and out[key] is None:
            out[key] = span
    if "T_max" in out and out.get("eta_min") is None and out.get("eta_min_ratio") is None:
        out["eta_min"] = 0.0
    return out


def _plain(key: str, value: Any) -> Any:
    """A saved hyper-parameter in the record's form (MMEngine keeps milestones in a Counter)."""
    if key == "milestones" and isinstance(value, Counter):
        return sorted(value.elements())
    return value


__all__ = [
    "INF",
    "ParamGroupsOwner",
    "_ParamScheduler",
    "check_optimizer",
    "count_step",
    "count_steps",
    "init_base_values",
    "warn_if_stepped_before_optimizer",
]
