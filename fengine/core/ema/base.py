"""The averager base (``init``/``update``) and :func:`sync`: the stepping rule every averager shares.

Concrete averagers (:mod:`fengine.core.ema.averagers`) only say how to average one list of
tensors; this module decides, per update, whether to copy, average or keep (the rule in
:mod:`fengine.core.ema`), runs it on the pure path and hands donated calls to
:mod:`fengine.core.ema.plan`.
"""

from __future__ import annotations

import torch
from torch import Tensor

from fengine.core.ema.plan import AverageFn, donated, plan_for
from fengine.core.ema.record import EMAState, TensorDict, copied, gather


class Averager:
    """What every averager shares: ``init``, ``update`` and their stepping rule (:mod:`fengine.core.ema`).

    Subclasses are frozen records with ``interval`` and ``update_buffers`` fields and implement
    :meth:`average`.
    """

    __slots__ = ()
    interval: int
    update_buffers: bool

    def average(
        self, avgs: list[Tensor], srcs: list[Tensor], steps: int, donate: bool
    ) -> list[Tensor]:
        """Average ``srcs`` into ``avgs`` (floating-point tensors) at counter value ``steps``.

        Args:
            avgs: the current averages.
            srcs: the source tensors, same devices and shapes.
            steps: the counter before this update.
            donate: write the new averages into ``avgs`` (else leave every input untouched).

        Returns:
            The new averages: ``avgs`` themselves when donated (donated updates rely on it).
        """
        raise NotImplementedError

    def init(
        self,
        params: TensorDict,
        buffers: TensorDict | None = None,
        *,
        device: torch.device | str | None = None,
    ) -> EMAState:
        """A state holding detached copies of ``params`` and ``buffers``, ``steps == 0``.

        Args:
            params: source parameters by name.
            buffers: source buffers by name (none if omitted).
            device: where the averages live (the sources' devices if ``None``).

        Returns:
            The initial state.
        """
        with torch.no_grad():
            return EMAState(
                params={n: t.detach().to(device, copy=True) for n, t in params.items()},
                buffers={n: t.detach().to(device, copy=True) for n, t in (buffers or {}).items()},
            )

    def update(
        self,
        state: EMAState,
        params: TensorDict,
        buffers: TensorDict | None = None,
        *,
        donate: bool = False,
    ) -> EMAState:
        """Fold one snapshot of the source into the averages.

        Args:
            state: the current state.
            params: the source's parameters (every name of ``state.params``).
            buffers: the source's buffers (every name of ``state.buffers``).
            donate: let the update write ``state``'s tensors in place (the caller never reads
                ``state`` again); bit-identical results. The new state keeps ``state``'s
                mappings, and the tensors aligned with these source mappings
                (:mod:`fengine.core.ema.plan`).

        Returns:
            The new state with ``steps + 1``.

        Raises:
            KeyError: a name of the state is missing from the source.
            ValueError: donated, a source tensor changed device or dtype in place since these
                source mappings were first averaged (``module.half()`` after the first update).
        """
        steps = state.steps
        mode = "copy" if steps == 0 else "average" if steps % self.interval == 0 else "keep"
        if donate:
            plan = plan_for(state, params, buffers, self.update_buffers)
            return donated(state, plan, mode, steps, self.average, steps + 1)
        with torch.no_grad():
            new_params = _advance(state.params, params, mode, steps, "params", self.average)
            buffer_mode = mode if self.update_buffers else "copy"
            new_buffers = _advance(
                state.buffers, buffers or {}, buffer_mode, steps, "buffers", self.average
            )
        return EMAState(params=new_params, buffers=new_buffers, steps=steps + 1)


def _advance(
    avg: TensorDict,
    source: TensorDict,
    mode: str,
    steps: int,
    what: str,
    average: AverageFn | None,
) -> dict[str, Tensor]:
    """The new (pure) entries of one mapping of the state: ``mode`` is the package's stepping rule."""
    if not avg:  # nothing averaged (a model without buffers): skip the per-step bookkeeping
        return {}
    srcs = gather(source, avg, what)
    names = list(avg)
    avgs = list(avg.values())
    if mode == "copy":
        return dict(zip(names, copied(avgs, srcs)))
    floating = [i for i, a in enumerate(avgs) if a.is_floating_point()]
    others = [i for i, a in enumerate(avgs) if not a.is_floating_point()]
    out = dict(avg)
    if mode == "average" and floating and average is not None:
        new = average([avgs[i] for i in floating], [srcs[i] for i in floating], steps, False)
        out.update(zip((names[i] for i in floating), new))
    if others:
        # Integer buffers (num_batches_tracked) cannot be averaged; they track the source.
        new = copied([avgs[i] for i in others], [srcs[i] for i in others])
        out.update(zip((names[i] for i in others), new))
    return out


def sync(
    state: EMAState, params: TensorDict, buffers: TensorDict | None = None, *, donate: bool = False
) -> EMAState:
    """Copy every entry of the source into the averages, ``steps`` unchanged.

    MMEngine's ``EMAHook`` does this after each iteration before averaging begins
    (``begin_iter``/``begin_epoch``), so the average starts from the weights at that point.

    Args:
        state: the current state.
        params: the source's parameters.
        buffers: the source's buffers.
        donate: copy into ``state``'s tensors in place (keeping its mappings, as ``update``).

    Returns:
        The state with the source's values.

    Raises:
        KeyError: a name of the state is missing from the source.
        ValueError: donated, a source tensor changed device or dtype in place (as ``update``).
    """
    if donate:
        plan = plan_for(state, params, buffers, None)
        return donated(state, plan, "copy", 0, None, state.steps)
    with torch.no_grad():
        return EMAState(
            params=_advance(state.params, params, "copy", 0, "params", None),
            buffers=_advance(state.buffers, buffers or {}, "copy", 0, "buffers", None),
            steps=state.steps,
        )
