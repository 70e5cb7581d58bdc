"""MMEngine's "Logging" tutorial (advanced_tutorials/logging.md), run with fengine.

The tutorial's toy model and loader, trained once per log-processor setting: the defaults,
``custom_cfg`` statistics (a global mean, a renamed one, local and global maxima), a scalar the
model writes to the message hub itself, and a ``log_level='DEBUG'`` run. Seeded with
``randomness=dict(seed=0)`` so the numbers repeat, and each run named (``experiment_name``):
MMEngine names a run's message hub after its experiment and start time, so two unnamed runs
started in the same second share one hub and each other's logged values. Usage:
``python logging_tutorial.py [DIR]``.
"""

import cifar_stand_in
import torch
import torch.nn as nn
from torch.utils.data import DataLoader

from fengine.logging import MessageHub
from fengine.model import BaseModel
from fengine.runner import Runner

train_dataset = [(torch.ones(1, 1), torch.ones(1, 1))] * 50
train_dataloader = DataLoader(train_dataset, batch_size=2)


class ToyModel(BaseModel):
    def __init__(self) -> None:
        super().__init__()
        self.linear = nn.Linear(1, 1)

    def forward(self, img, label, mode):
        feat = self.linear(img)
        loss1 = (feat - label).pow(2)
        loss2 = (feat - label).abs()
        return dict(loss1=loss1, loss2=loss2)


class HubToyModel(BaseModel):

    def __init__(self) -> None:
        super().__init__()
        self.linear = nn.Linear(1, 1)

    def forward(self, img, label, mode):
        feat = self.linear(img)
        loss_tmp = (feat - label).abs()
        loss = loss_tmp.pow(2)

        message_hub = MessageHub.get_current_instance()
        # update the intermediate `loss_tmp` in the message hub
        message_hub.update_scalar('train/loss_tmp', loss_tmp.sum())
        return dict(loss=loss)


def train(name, model, **kwargs):
    runner = Runner(
        model=model,
        experiment_name=name,
        work_dir='tmp_dir',
        train_dataloader=train_dataloader,
        train_cfg=dict(by_epoch=True, max_epochs=1),
        optim_wrapper=dict(optimizer=dict(type='SGD', lr=0.01)),
        randomness=dict(seed=0),
        **kwargs,
    )
    runner.train()


def main():
    cifar_stand_in.enter_work_folder()
    train('defaults', ToyModel(), log_processor=dict(window_size=10, by_epoch=True, custom_cfg=None, num_digits=4))
    train('global_mean', ToyModel(), log_processor=dict(
        custom_cfg=[
            dict(data_src='loss1',  # original loss name: loss1
                 method_name='mean',  # statistical method: mean
                 window_size='global')]))  # window_size: global
    train('global_mean_named', ToyModel(), log_processor=dict(
        custom_cfg=[
            # log_name means the second name of loss1
            dict(data_src='loss1', log_name='loss1_global', method_name='mean', window_size='global')]))
    train('maxima', ToyModel(), log_processor=dict(custom_cfg=[
        # statistic loss1 with the local maximum value
        dict(data_src='loss1',
             log_name='loss1_local_max',
             window_size=10,
             method_name='max'),
        # statistic loss1 with the global maximum value
        dict(
            data_src='loss1',
            log_name='loss1_global_max',
            method_name='max',
            window_size='global')
    ]))
    train('hub_scalar', HubToyModel(), log_processor=dict(
        custom_cfg=[
            # statistic the loss_tmp with the averaged value
            dict(
                data_src='loss_tmp',
                window_size=10,
                method_name='mean')
        ]
    ))
    train('debug', ToyModel(), log_level='DEBUG')


if __name__ == '__main__':
    main()
