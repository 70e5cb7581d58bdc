"""MMEngine's "Model" tutorial (tutorials/model.md), run with fengine.

``BaseModel``'s ``train_step``/``val_step``/``test_step`` on the "15 minutes" model, next to the
hand-written loop the tutorial explains them with (``data_preprocessor``, ``forward`` in ``'loss'``
mode, ``parse_losses``, ``optim_wrapper.update_params``): both give the same weights. The
tutorial's loop calls ``self.parse_losses()`` without its argument; the losses are passed here.
Usage: ``python model_tutorial.py [DIR]``.
"""

import copy

import cifar_stand_in
import torch
from get_started_tutorial import MMResNet50
from torch.optim import SGD
from torch.utils.data import DataLoader

from fengine.optim import OptimWrapper


def main():
    cifar_stand_in.enter_work_folder()
    train_dataloader = DataLoader(cifar_stand_in.CIFAR10(train=True), batch_size=32)
    model = MMResNet50()
    by_hand = copy.deepcopy(model)
    optim_wrapper = OptimWrapper(SGD(model.parameters(), lr=0.01, momentum=0.9))
    hand_wrapper = OptimWrapper(SGD(by_hand.parameters(), lr=0.01, momentum=0.9))
    print("default data_preprocessor:", type(model.data_preprocessor).__name__)

    for data_batch in train_dataloader:
        log_vars = model.train_step(data_batch, optim_wrapper)

        data = by_hand.data_preprocessor(data_batch, training=True)
        losses = by_hand(*data, mode='loss')
        parsed_losses, hand_log_vars = by_hand.parse_losses(losses)
        hand_wrapper.update_params(parsed_losses)
    print("train_step loss:", round(float(log_vars['loss']), 4), "by hand:", round(float(hand_log_vars['loss']), 4))
    print("same weights:", all(torch.equal(a, b) for a, b in zip(model.state_dict().values(), by_hand.state_dict().values())))

    val_dataloader = DataLoader(cifar_stand_in.CIFAR10(train=False), batch_size=32)
    correct = total = 0
    for data_batch in val_dataloader:
        scores, labels = model.val_step(data_batch)
        test_scores, _ = model.test_step(data_batch)
        assert torch.equal(scores, test_scores)
        correct += int((scores.argmax(1) == labels).sum())
        total += len(labels)
    print(f"val_step accuracy: {100 * correct / total:.4f}")


if __name__ == '__main__':
    main()
