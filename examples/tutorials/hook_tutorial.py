"""MMEngine's "Hook" tutorial (tutorials/hook.md), run with fengine.

The default hooks configured as in the tutorial (checkpoints by interval, the newest kept, the best
one, published keys, a late start; the logger's interval), the custom hooks it lists (EMA, empty
cache, buffer synchronisation) and its own ``CheckInvalidLossHook``, on the model and data of the
"15 minutes" tutorial. Left out: ``ProfilerHook(on_trace_ready=dict(type='tb_trace'))`` needs
TensorBoard. Usage: ``python hook_tutorial.py [DIR]``.
"""

import os

import cifar_stand_in
import torch
from get_started_tutorial import Accuracy, MMResNet50
from torch.optim import SGD
from torch.utils.data import DataLoader

from fengine.hooks import Hook
from fengine.registry import HOOKS
from fengine.runner import Runner


@HOOKS.register_module()
class CheckInvalidLossHook(Hook):
    """Check invalid loss hook.

    This hook will regularly check whether the loss is valid
    during training.

    Args:
        interval (int): Checking interval (every k iterations).
            Defaults to 50.
    """

    def __init__(self, interval=50):
        self.interval = interval

    def after_train_iter(self, runner, batch_idx, data_batch=None, outputs=None):
        if self.every_n_train_iters(runner, self.interval):
            assert torch.isfinite(outputs['loss']),\
                runner.logger.info('loss become infinite or NaN!')
            print(f"CheckInvalidLossHook: iteration {runner.iter + 1} has a finite loss")


def main():
    cifar_stand_in.enter_work_folder()
    default_hooks = dict(
        runtime_info=dict(type='RuntimeInfoHook'),
        timer=dict(type='IterTimerHook'),
        sampler_seed=dict(type='DistSamplerSeedHook'),
        logger=dict(type='LoggerHook', interval=4),
        param_scheduler=dict(type='ParamSchedulerHook'),
        checkpoint=dict(type='CheckpointHook', interval=1, max_keep_ckpts=2, save_begin=1,
                        save_best='auto', published_keys=['meta', 'state_dict']),
    )
    custom_hooks = [
        dict(type='EMAHook'),
        dict(type='EmptyCacheHook'),
        dict(type='SyncBuffersHook'),
        dict(type='CheckInvalidLossHook', interval=5, priority='ABOVE_NORMAL'),
    ]
    runner = Runner(
        model=MMResNet50(),
        work_dir='./work_dir',
        train_dataloader=DataLoader(cifar_stand_in.CIFAR10(train=True), batch_size=32, shuffle=True),
        optim_wrapper=dict(optimizer=dict(type=SGD, lr=0.01, momentum=0.9)),
        train_cfg=dict(by_epoch=True, max_epochs=4, val_interval=1),
        val_dataloader=DataLoader(cifar_stand_in.CIFAR10(train=False), batch_size=32),
        val_cfg=dict(),
        val_evaluator=dict(type=Accuracy),
        default_hooks=default_hooks,
        custom_hooks=custom_hooks,
        randomness=dict(seed=0),
    )
    runner.train()
    print("checkpoints:", sorted(f for f in os.listdir('work_dir') if f.endswith('.pth')))


if __name__ == '__main__':
    main()
