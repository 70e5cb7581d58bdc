"""MMEngine's "Runner" tutorial (tutorials/runner.md), run with fengine.

The tutorial's model, dataset and metric, a Runner built in Python and the same run from a config
file (``example_config.py``, written here) with ``Runner.from_cfg``. Shortened to stay fast: 2000
training and 400 validation points, 4 epochs (milestones at 2 and 3), no loader worker processes,
and seeded with ``randomness=dict(seed=0)`` so that both runs are the same.
Usage: ``python runner_tutorial.py [DIR]``.
"""

import cifar_stand_in
import torch
import torch.nn as nn
import torch.nn.functional as F
from torch.optim import Adam
from torch.utils.data import DataLoader, Dataset, default_collate

from fengine.config import Config
from fengine.evaluator import BaseMetric
from fengine.model import BaseModel
from fengine.registry import DATASETS, METRICS, MODELS
from fengine.runner import Runner


@MODELS.register_module()
class MyAwesomeModel(BaseModel):
    def __init__(self, layers=4, activation='relu') -> None:
        super().__init__()
        if activation == 'relu':
            act_type = nn.ReLU
        elif activation == 'silu':
            act_type = nn.SiLU
        elif activation == 'none':
            act_type = nn.Identity
        else:
            raise NotImplementedError
        sequence = [nn.Linear(2, 64), act_type()]
        for _ in range(layers-1):
            sequence.extend([nn.Linear(64, 64), act_type()])
        self.mlp = nn.Sequential(*sequence)
        self.classifier = nn.Linear(64, 2)

    def forward(self, data, labels, mode):
        x = self.mlp(data)
        x = self.classifier(x)
        if mode == 'tensor':
            return x
        elif mode == 'predict':
            return F.softmax(x, dim=1), labels
        elif mode == 'loss':
            return {'loss': F.cross_entropy(x, labels)}


@DATASETS.register_module()
class MyDataset(Dataset):
    def __init__(self, is_train, size):
        self.is_train = is_train
        if self.is_train:
            torch.manual_seed(0)
            self.labels = torch.randint(0, 2, (size,))
        else:
            torch.manual_seed(3407)
            self.labels = torch.randint(0, 2, (size,))
        r = 3 * (self.labels+1) + torch.randn(self.labels.shape)
        theta = torch.rand(self.labels.shape) * 2 * torch.pi
        self.data = torch.vstack([r*torch.cos(theta), r*torch.sin(theta)]).T

    def __getitem__(self, index):
        return self.data[index], self.labels[index]

    def __len__(self):
        return len(self.data)


@METRICS.register_module()
class Accuracy(BaseMetric):
    def __init__(self):
        super().__init__()

    def process(self, data_batch, data_samples):
        score, gt = data_samples
        self.results.append({
            'batch_size': len(gt),
            'correct': (score.argmax(dim=1) == gt).sum().cpu(),
        })

    def compute_metrics(self, results):
        total_correct = sum(r['correct'] for r in results)
        total_size = sum(r['batch_size'] for r in results)
        return dict(accuracy=100*total_correct/total_size)


EXAMPLE_CONFIG = """
model = dict(type='MyAwesomeModel',
    layers=2,
    activation='relu')
work_dir = 'exp/my_awesome_model_from_cfg'

train_dataloader = dict(
    dataset=dict(type='MyDataset',
        is_train=True,
        size=2000),
    sampler=dict(
        type='DefaultSampler',
        shuffle=True),
    collate_fn=dict(type='default_collate'),
    batch_size=64,
    pin_memory=True,
    num_workers=0)
train_cfg = dict(
    by_epoch=True,
    max_epochs=4,
    val_begin=2,
    val_interval=1)
optim_wrapper = dict(
    optimizer=dict(
        type='Adam',
        lr=0.001))
param_scheduler = dict(
    type='MultiStepLR',
    by_epoch=True,
    milestones=[2, 3],
    gamma=0.1)

val_dataloader = dict(
    dataset=dict(type='MyDataset',
        is_train=False,
        size=400),
    sampler=dict(
        type='DefaultSampler',
        shuffle=False),
    collate_fn=dict(type='default_collate'),
    batch_size=400,
    pin_memory=True,
    num_workers=0)
val_cfg = dict()
val_evaluator = dict(type='Accuracy')

default_hooks = dict(
    checkpoint=dict(type='CheckpointHook', interval=1))
launcher = 'none'
env_cfg = dict(
    cudnn_benchmark=False,
    backend='nccl',
    mp_cfg=dict(mp_start_method='fork'))
log_level = 'INFO'
load_from = None
resume = False
randomness = dict(seed=0)
"""


def main():
    cifar_stand_in.enter_work_folder()
    runner = Runner(
        model=MyAwesomeModel(
            layers=2,
            activation='relu'),
        work_dir='exp/my_awesome_model',
        train_dataloader=DataLoader(
            dataset=MyDataset(
                is_train=True,
                size=2000),
            shuffle=True,
            collate_fn=default_collate,
            batch_size=64,
            pin_memory=True,
            num_workers=0),
        train_cfg=dict(
            by_epoch=True,
            max_epochs=4,
            val_begin=2,
            val_interval=1),
        optim_wrapper=dict(
            optimizer=dict(
                type=Adam,
                lr=0.001)),
        param_scheduler=dict(
            type='MultiStepLR',
            by_epoch=True,
            milestones=[2, 3],
            gamma=0.1),
        val_dataloader=DataLoader(
            dataset=MyDataset(
                is_train=False,
                size=400),
            shuffle=False,
            collate_fn=default_collate,
            batch_size=400,
            pin_memory=True,
            num_workers=0),
        val_cfg=dict(),
        val_evaluator=dict(type=Accuracy),
        default_hooks=dict(
            checkpoint=dict(type='CheckpointHook', interval=1)),
        launcher='none',
        env_cfg=dict(
            cudnn_benchmark=False,
            backend='nccl',
            mp_cfg=dict(mp_start_method='fork')),
        log_level='INFO',
        load_from=None,
        resume=False,
        randomness=dict(seed=0),
    )
    runner.train()

    with open('example_config.py', 'w') as handle:
        handle.write(EXAMPLE_CONFIG)
    config = Config.fromfile('example_config.py')
    runner = Runner.from_cfg(config)
    runner.train()


if __name__ == '__main__':
    main()
