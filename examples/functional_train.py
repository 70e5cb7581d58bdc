"""Training with fengine's functional core alone: no Runner, no hooks, no hidden state.

The whole run is one immutable ``TrainState`` (parameters, buffers, optimizer state, EMA,
counters). ``make_train_step`` turns the model, a loss and an optimizer transform into a pure
function ``step(state, batch) -> (state, out)``; the learning rate comes from a schedule computed
up front and is written into the optimizer state before each step; the EMA is a pure update of
its own record. A checkpoint is ``state.to_dict()``, loadable with ``weights_only=True``.

    python examples/functional_train.py                  # 10 epochs on the 8x8 digits
    python examples/functional_train.py --epochs 1       # a smoke test
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from typing import Any

import attrs
import torch
import torch.nn.functional as F
from torch import nn

import fengine.core as fc


def load_data(seed: int = 0) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """scikit-learn's 8x8 digits (or generated images without scikit-learn), split 80/20."""
    try:
        from sklearn.datasets import load_digits
    except ImportError:
        print("scikit-learn is missing (pip install 'fengine[examples]'): using generated images")
        generator = torch.Generator().manual_seed(seed)
        labels = torch.arange(1797) % 10
        images = torch.rand(10, 64, generator=generator)[labels] + 0.35 * torch.randn(
            1797, 64, generator=generator
        )
    else:
        digits = load_digits()
        images = torch.as_tensor(digits.data, dtype=torch.float32) / 16.0
        labels = torch.as_tensor(digits.target, dtype=torch.long)
    order = torch.randperm(len(labels), generator=torch.Generator().manual_seed(seed))
    val, train = order[:359], order[359:]
    return images[train], labels[train], images[val], labels[val]


def accuracy(logits: torch.Tensor, labels: torch.Tensor) -> float:
    """Fraction of rows whose largest logit is the label."""
    return float((logits.argmax(dim=1) == labels).float().mean())


def main(argv: Sequence[str] | None = None) -> dict[str, float]:
    """Train an MLP on the digits and print accuracy per epoch; returns the final accuracies."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--epochs", type=int, default=10)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--lr", type=float, default=0.1)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--save", metavar="PATH", help="write the final state as a checkpoint")
    args = parser.parse_args(argv)

    torch.manual_seed(args.seed)
    x_train, y_train, x_val, y_val = load_data(args.seed)
    model = nn.Sequential(nn.Linear(64, 128), nn.ReLU(), nn.Dropout(0.1), nn.Linear(128, 10))

    # The optimizer: clip the gradient norm, then SGD with Nesterov momentum (bit-identical to
    # torch.optim.SGD). Its state holds the hyper-parameters, so the schedule can change them.
    tx = fc.optim.chain(
        fc.optim.clip_grad_norm(5.0), fc.optim.sgd(args.lr, momentum=0.9, nesterov=True)
    )
    steps_per_epoch = -(-len(y_train) // args.batch_size)
    total = args.epochs * steps_per_epoch
    # Warm up linearly over 30 iterations, then cosine-decay to zero: MMEngine's LinearLR +
    # CosineAnnealingLR, as a list of learning rates (one per step).
    schedule = [
        fc.schedule.Linear(start_factor=0.1, begin=0, end=30, by_epoch=False),
        fc.schedule.Cosine(begin=0, end=total, by_epoch=False),
    ]
    lrs = fc.schedule.trajectory(schedule, args.lr, total)
    averager = fc.ema.ExponentialMovingAverage(momentum=0.05)
    state = fc.TrainState.create(model, tx, averager=averager)

    def loss_fn(view: fc.ModelView, batch: tuple[torch.Tensor, torch.Tensor]) -> torch.Tensor:
        inputs, labels = batch
        return F.cross_entropy(view(inputs), labels)

    train_step = fc.make_train_step(model, loss_fn, tx)
    predict = fc.make_eval_step(model)
    generator = torch.Generator().manual_seed(args.seed)
    result: dict[str, float] = {}
    for epoch in range(args.epochs):
        losses = []
        for index in torch.randperm(len(y_train), generator=generator).split(args.batch_size):
            state = attrs.evolve(
                state, opt_state=fc.optim.set_hyperparams(state.opt_state, lr=lrs[state.step])
            )
            # donate=True: this loop never reads the old state again, so the step may reuse its
            # tensors in place (same numbers as the pure call, fewer allocations).
            state, out = train_step(state, (x_train[index], y_train[index]), donate=True)
            state = attrs.evolve(
                state, ema=averager.update(state.ema, state.params, state.buffers, donate=True)
            )
            losses.append(out.loss)
        state = attrs.evolve(state, epoch=epoch + 1, iter=state.step)
        averaged = attrs.evolve(state, params=state.ema.params, buffers=state.ema.buffers)
        result = {
            "accuracy": accuracy(predict(state, x_val), y_val),
            "ema_accuracy": accuracy(predict(averaged, x_val), y_val),
        }
        print(
            f"epoch {epoch + 1:2d}  loss {float(torch.stack(losses).mean()):.4f}  "
            f"lr {fc.optim.hyperparams(state.opt_state)[0]['lr']:.2e}  "
            f"val accuracy {result['accuracy']:.4f}  (EMA weights {result['ema_accuracy']:.4f})"
        )
    if args.save:
        torch.save(state.to_dict(), args.save)
        restored: Any = fc.TrainState.load(args.save)  # torch.load(weights_only=True), registered records only
        assert accuracy(predict(restored, x_val), y_val) == result["accuracy"]
        print(
            f"saved the state to {args.save} (step {restored.step}); it reloads with weights_only=True"
        )
    return result


if __name__ == "__main__":
    main()
