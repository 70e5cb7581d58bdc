"""MMEngine's "Parameter Scheduler" tutorial (tutorials/param_scheduler.md), run with fengine.

Each ``param_scheduler`` the tutorial shows drives a short run of the "15 minutes" model (4 epochs
of 8 iterations; milestones, ``T_max`` and window ends scaled to fit), and a hook prints the
learning rate, momentum and weight decay at every iteration. The first block, a plain PyTorch
loop, passes ``model.parameters()`` where the tutorial's ``SGD(model, 0.1)`` would fail.
Usage: ``python param_scheduler_tutorial.py [DIR]``.
"""

import cifar_stand_in
import torch
from get_started_tutorial import Accuracy, MMResNet50  # noqa: F401 - registers nothing, imported for the model
from torch.optim import SGD
from torch.optim.lr_scheduler import ExponentialLR
from torch.utils.data import DataLoader

from fengine.hooks import Hook
from fengine.optim.scheduler import MultiStepLR
from fengine.runner import Runner


class PrintParams(Hook):
    """Prints lr, momentum and weight_decay of the first param group before each iteration."""

    def __init__(self, name):
        self.name = name
        self.values = []

    def before_train_iter(self, runner, batch_idx, data_batch=None):
        group = runner.optim_wrapper.param_groups[0]
        self.values.append(f"{group['lr']:.6g}/{group['momentum']:.4g}/{group['weight_decay']:.6g}")

    def after_run(self, runner):
        print(f"{self.name}: {' '.join(self.values)}")


def run(name, param_scheduler, optimizer=None):
    model = MMResNet50()
    if optimizer is not None:
        optimizer = optimizer(model)
        param_scheduler = param_scheduler(optimizer)
    runner = Runner(
        model=model,
        work_dir=f'./work_dir/{name}',
        train_dataloader=DataLoader(cifar_stand_in.CIFAR10(train=True), batch_size=32, shuffle=True),
        optim_wrapper=dict(optimizer=optimizer or dict(type=SGD, lr=0.01, momentum=0.9, weight_decay=1e-4)),
        param_scheduler=param_scheduler,
        train_cfg=dict(by_epoch=True, max_epochs=4),
        default_hooks=dict(logger=dict(type='LoggerHook', interval=8), checkpoint=None),
        custom_hooks=[PrintParams(name)],
        randomness=dict(seed=0),
    )
    runner.train()


def main():
    cifar_stand_in.enter_work_folder()

    model = torch.nn.Linear(1, 1)
    dataset = [torch.randn((1, 1, 1)) for _ in range(20)]
    optimizer = SGD(model.parameters(), 0.1)
    scheduler = ExponentialLR(optimizer, gamma=0.9)

    for epoch in range(10):  # noqa: B007 - the tutorial's loop
        for data in dataset:
            optimizer.zero_grad()
            output = model(data)
            loss = 1 - output
            loss.backward()
            optimizer.step()
        scheduler.step()
    print(f"torch ExponentialLR after 10 epochs: {optimizer.param_groups[0]['lr']:.6g}")

    # Built by hand, then given to the Runner.
    run('manual', lambda optimizer: MultiStepLR(optimizer, milestones=[2, 3], gamma=0.1),
        optimizer=lambda model: SGD(model.parameters(), lr=0.01, momentum=0.9))
    run('by_epoch', dict(type='MultiStepLR', by_epoch=True, milestones=[2, 3], gamma=0.1))
    run('by_iter', dict(type='MultiStepLR', by_epoch=False, milestones=[12, 20], gamma=0.1))
    epoch_length = 8
    run('build_iter_from_epoch',
        lambda optimizer: MultiStepLR.build_iter_from_epoch(
            optimizer, milestones=[2, 3], gamma=0.1, epoch_length=epoch_length),
        optimizer=lambda model: SGD(model.parameters(), lr=0.01, momentum=0.9))
    run('convert_to_iter_based', dict(type='MultiStepLR', by_epoch=True, milestones=[2, 3], gamma=0.1,
                                      convert_to_iter_based=True))
    run('cosine', dict(type='CosineAnnealingLR', by_epoch=True, T_max=4))
    run('cosine_iter', dict(type='CosineAnnealingLR', by_epoch=True, T_max=4, convert_to_iter_based=True))
    run('warmup_multistep', [
        dict(type='LinearLR', start_factor=0.001, by_epoch=False, begin=0, end=5),
        dict(type='MultiStepLR', by_epoch=True, milestones=[2, 3], gamma=0.1),
    ])
    run('warmup_cosine', [
        dict(type='LinearLR', start_factor=0.001, by_epoch=False, begin=0, end=8),
        dict(type='CosineAnnealingLR', T_max=24, by_epoch=False, begin=8, end=32),
    ])
    run('momentum', [
        dict(type='LinearLR', start_factor=0.5, by_epoch=False, begin=0, end=8),
        dict(type='LinearMomentum', start_factor=0.001, by_epoch=False, begin=0, end=32),
    ])
    run('param_lr', [dict(type='LinearParamScheduler', param_name='lr', start_factor=0.001,
                          by_epoch=False, begin=0, end=32)])
    run('param_weight_decay', [dict(type='LinearParamScheduler', param_name='weight_decay',
                                    start_factor=0.001, by_epoch=False, begin=0, end=32)])


if __name__ == '__main__':
    main()
