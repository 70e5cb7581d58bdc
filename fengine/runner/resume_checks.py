"""What a checkpoint must satisfy before a run continues from it (strict resume).

A resumed run must be the run that saved the checkpoint: the same parameter names and shapes,
optimizer states that fit the parameter groups, and counters that make sense for the configured
loop. Each check returns a message naming the first mismatches (``None`` when all fit), so the
runner can raise before anything is trained, or, with ``Runner(resume=dict(strict=False))``,
warn and load what fits as MMEngine does.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sized
from typing import Any

import torch

from fengine.runner.loops import EpochBasedTrainLoop

#: How many mismatches of each kind a message names (the count of all is given too).
SHOWN = 5
_RESUME_KEYS = frozenset(("strict",))


def resume_setting(resume: object) -> tuple[bool, bool]:
    """Read the Runner's ``resume`` argument: ``True``/``False``, or ``dict(strict=False)``.

    Args:
        resume: the argument.

    Returns:
        ``(whether to resume, whether strictly)``; a dict means resume.

    Raises:
        TypeError: neither a bool nor a dict, or ``strict`` is not a bool.
        KeyError: a dict key other than ``strict``.
    """
    if isinstance(resume, bool):
        return resume, True
    if isinstance(resume, Mapping):
        unknown = sorted(set(resume) - _RESUME_KEYS)
        if unknown:
            raise KeyError(f"resume: unknown keys {unknown} in {dict(resume)!r}; accepted: {sorted(_RESUME_KEYS)}")
        strict = resume.get("strict", True)
        if not isinstance(strict, bool):
            raise TypeError(f"resume['strict'] must be a bool, got {strict!r}")
        return True, strict
    raise TypeError(f"resume must be a bool or a dict such as dict(strict=False), got {resume!r}")


def _listed(kind: str, items: list[str]) -> str:
    more = f" ... ({len(items)} in all)" if len(items) > SHOWN else ""
    return f"{kind}: {', '.join(items[:SHOWN])}{more}"


def weights_mismatch(module: torch.nn.Module, state_dict: Mapping[str, Any]) -> str | None:
    """How ``state_dict`` does not fit ``module``'s own: missing and unexpected names, shapes.

    Args:
        module: the (unwrapped) model.
        state_dict: the checkpoint's weights, names already revised.

    Returns:
        The first mismatches of each kind, or ``None`` when names and shapes all match.
    """
    own = module.state_dict()
    missing = [k for k in own if k not in state_dict]
    unexpected = [k for k in state_dict if k not in own]
    shapes = [
        f"{k} (checkpoint {tuple(v.shape)}, model {tuple(own[k].shape)})"
        for k, v in state_dict.items()
        if k in own and isinstance(v, torch.Tensor) and v.shape != own[k].shape
    ]
    problems = [
        _listed(kind, items)
        for kind, items in (("missing from the checkpoint", missing), ("unexpected", unexpected), ("shapes differ", shapes))
        if items
    ]
    return "; ".join(problems) or None


def _wrappers(optim_wrapper: Any, saved: Any) -> Iterable[tuple[str, Any, Any]]:
    inner = getattr(optim_wrapper, "optim_wrappers", None)
    if isinstance(inner, Mapping):
        for name, wrapper in inner.items():
            yield f"optimizer {name!r}: ", wrapper, saved.get(name) if isinstance(saved, Mapping) else None
    else:
        yield "", optim_wrapper, saved


def optimizer_mismatch(optim_wrapper: Any, saved: Any) -> str | None:
    """How a saved optimizer state does not fit the built optimizer's parameter groups.

    Checked: the number of groups, the number of parameters in each, and for every saved state
    tensor that is not a scalar, its shape and dtype against its parameter's (torch's
    ``load_state_dict`` accepts a state of another shape and fails only at the next step).
    ``LBFGS`` keeps flat history tensors, so only its group sizes are checked.

    Args:
        optim_wrapper: the built ``OptimWrapper`` (or ``OptimWrapperDict``).
        saved: the checkpoint's ``optimizer`` entry.

    Returns:
        The first mismatches, or ``None`` when the state fits.
    """
    problems: list[str] = []
    for prefix, wrapper, state in _wrappers(optim_wrapper, saved):
        optimizer = getattr(wrapper, "optimizer", None)
        if not isinstance(optimizer, torch.optim.Optimizer):
            continue
        groups = state.get("param_groups") if isinstance(state, Mapping) else None
        if not isinstance(groups, list) or not all(isinstance(g, Mapping) and isinstance(g.get("params"), list) for g in groups):
            problems.append(f"{prefix}the checkpoint holds no optimizer state in torch's format")
            continue
        if len(groups) != len(optimizer.param_groups):
            problems.append(
                f"{prefix}{len(groups)} parameter groups saved, {len(optimizer.param_groups)} configured"
            )
            continue
        per_param = state.get("state") if isinstance(state.get("state"), Mapping) else {}
        wrong: list[str] = []
        for index, (group, current) in enumerate(zip(groups, optimizer.param_groups)):
            if len(group["params"]) != len(current["params"]):
                problems.append(
                    f"{prefix}group {index} has {len(group['params'])} parameters saved, "
                    f"{len(current['params'])} configured"
                )
                continue
            if isinstance(optimizer, torch.optim.LBFGS):
                continue
            for key, param in zip(group["params"], current["params"]):
                entries = per_param.get(key)
                for name, value in (entries.items() if isinstance(entries, Mapping) else ()):
                    if not isinstance(value, torch.Tensor) or value.dim() == 0:
                        continue
                    if value.shape != param.shape or value.dtype != param.dtype:
                        wrong.append(
                            f"group {index} parameter {key} {name!r} "
                            f"(checkpoint {tuple(value.shape)} {value.dtype}, parameter {tuple(param.shape)} {param.dtype})"
                        )
        if wrong:
            problems.append(prefix + _listed("states of another shape or dtype", wrong))
    return "; ".join(problems) or None


def counter_problem(meta: Mapping[str, Any], loop: Any) -> tuple[str | None, str | None]:
    """Whether ``meta``'s ``epoch``/``iter`` counters are valid and fit the configured loop.

    Counters must be non-negative ints (always). With a built train loop they must also lie
    within its ``max_epochs``/``max_iters``, and for an epoch loop whose dataloader length ``L``
    is known, ``epoch * L <= iter <= (epoch + 1) * L`` (the iterations of the epochs done, plus
    those of the epoch under way).

    Args:
        meta: the checkpoint's ``meta``.
        loop: the runner's train loop (anything without those attributes skips the fit checks).

    Returns:
        ``(invalid, inconsistent)``: why the counters are invalid, and why they do not fit the
        loop (each ``None`` when fine).
    """
    epoch, it = meta.get("epoch"), meta.get("iter")
    bad = [f"{k}={v!r}" for k, v in (("epoch", epoch), ("iter", it)) if type(v) is not int or v < 0]
    if bad:
        return f"its `meta` counters must be non-negative ints, got {', '.join(bad)}", None
    assert isinstance(epoch, int) and isinstance(it, int)
    max_epochs, max_iters = getattr(loop, "max_epochs", None), getattr(loop, "max_iters", None)
    if isinstance(max_iters, int) and it > max_iters:
        return None, f"iter={it} is past the configured max_iters={max_iters}"
    if isinstance(max_epochs, int) and epoch > max_epochs:
        return None, f"epoch={epoch} is past the configured max_epochs={max_epochs}"
    dataloader = getattr(loop, "dataloader", None)
    if isinstance(loop, EpochBasedTrainLoop) and isinstance(dataloader, Sized):
        length = len(dataloader)
        if length > 0 and not epoch * length <= it <= (epoch + 1) * length:
            return None, (
                f"iter={it} does not fit epoch={epoch} with {length} iterations per epoch "
                f"(expected {epoch * length}..{(epoch + 1) * length})"
            )
    return None, None


__all__ = ["SHOWN", "counter_problem", "optimizer_mismatch", "resume_setting", "weights_mismatch"]
