"""MMEngine's "OptimWrapper" tutorial (tutorials/optim_wrapper.md), run with fengine on the CPU.

The steps are the tutorial's with ``mmengine`` replaced by ``fengine``; ``.cuda()`` calls are
left out so it runs on any machine. The mixed-precision wrapper (``AmpOptimWrapper``) runs in
bfloat16 on the CPU with fengine (MMEngine's needs a GPU), on a model of its own; its lines start
with ``amp:``. Clipping by value needs ``type='value'``: the tutorial's ``dict(clip_value=0.2)``
is norm clipping with a wrong argument (MMEngine fails at the first step, fengine at once).
"""

from __future__ import annotations

from collections import OrderedDict

import torch
import torch.nn as nn
import torch.nn.functional as F
from torch.optim import SGD

from fengine.logging import print_log
from fengine.optim import (
    AmpOptimWrapper,
    DefaultOptimWrapperConstructor,
    OptimWrapper,
    OptimWrapperDict,
    build_optim_wrapper,
)
from fengine.registry import OPTIM_WRAPPER_CONSTRUCTORS


def _amp_available() -> bool:
    try:
        AmpOptimWrapper(optimizer=SGD(nn.Linear(1, 1).parameters(), lr=0.01))
    except AssertionError:  # MMEngine's needs a GPU
        return False
    return True


def main() -> None:
    amp = _amp_available()
    inputs = [torch.zeros(10, 1, 1)] * 10
    targets = [torch.ones(10, 1, 1)] * 10
    torch.manual_seed(0)
    model = nn.Linear(1, 1)
    reference = nn.Linear(1, 1)
    reference.load_state_dict(model.state_dict())

    # A plain PyTorch loop ...
    optimizer = SGD(reference.parameters(), lr=0.01)
    optimizer.zero_grad()
    for input, target in zip(inputs, targets):
        output = reference(input)
        loss = F.l1_loss(output, target)
        loss.backward()
        optimizer.step()
        optimizer.zero_grad()

    # ... and the same loop through an OptimWrapper: the same weights.
    optimizer = SGD(model.parameters(), lr=0.01)
    optim_wrapper = OptimWrapper(optimizer=optimizer)
    for input, target in zip(inputs, targets):
        output = model(input)
        loss = F.l1_loss(output, target)
        optim_wrapper.update_params(loss)
    print("same as the plain loop:", torch.equal(model.bias, reference.bias), model.bias.item())

    if amp:
        amp_model = nn.Linear(1, 1)
        amp_model.load_state_dict(model.state_dict())
        amp_optimizer = SGD(amp_model.parameters(), lr=0.01)
        optim_wrapper = AmpOptimWrapper(optimizer=amp_optimizer, accumulative_counts=2)
        for input, target in zip(inputs, targets):
            with optim_wrapper.optim_context(amp_model):
                output = amp_model(input)
            loss = F.l1_loss(output, target)
            optim_wrapper.update_params(loss)
        print("amp: 5 steps of 2 accumulated iterations, bias", round(amp_model.bias.item(), 4))

    # Accumulating by hand with backward/step/zero_grad ...
    optim_wrapper = OptimWrapper(optimizer=optimizer)
    for idx, (input, target) in enumerate(zip(inputs, targets)):
        optimizer.zero_grad()
        with optim_wrapper.optim_context(model):
            output = model(input)
        loss = F.l1_loss(output, target)
        optim_wrapper.backward(loss)
        if idx % 2 == 0:
            optim_wrapper.step()
            optim_wrapper.zero_grad()
    print("after manual accumulation:", round(model.bias.item(), 4))

    # Gradient clipping by norm and by value.
    for clip in (dict(max_norm=1), dict(type='value', clip_value=0.2)):
        print("clipped", clip, end=" ")  # (MMEngine's wrapper pops `type` from the dict)
        optim_wrapper = OptimWrapper(optimizer=optimizer, clip_grad=clip)
        optim_wrapper.update_params(F.l1_loss(model(inputs[0]) * 100, targets[0]))
        print(round(model.bias.item(), 4))

    # Learning rate and momentum.
    model = nn.Linear(1, 1)
    optimizer = SGD(model.parameters(), lr=0.01)
    optim_wrapper = OptimWrapper(optimizer)

    print(optimizer.param_groups[0]['lr'])  # 0.01
    print(optimizer.param_groups[0]['momentum'])  # 0
    print(optim_wrapper.get_lr())  # {'lr': [0.01]}
    print(optim_wrapper.get_momentum())  # {'momentum': [0]}

    # State dicts.
    optim_wrapper = OptimWrapper(optimizer=optimizer)
    optim_state_dict = optim_wrapper.state_dict()
    print(optim_state_dict)
    optim_wrapper_new = OptimWrapper(optimizer=optimizer)
    optim_wrapper_new.load_state_dict(optim_state_dict)
    if amp:
        amp_optim_wrapper = AmpOptimWrapper(optimizer=optimizer)
        amp_optim_state_dict = amp_optim_wrapper.state_dict()
        amp_optim_wrapper_new = AmpOptimWrapper(optimizer=optimizer)
        amp_optim_wrapper_new.load_state_dict(amp_optim_state_dict)
        print("amp: state dict keys", sorted(amp_optim_state_dict))

    # Several optimizers.
    gen = nn.Linear(1, 1)
    disc = nn.Linear(1, 1)
    optimizer_gen = SGD(gen.parameters(), lr=0.01)
    optimizer_disc = SGD(disc.parameters(), lr=0.01)

    optim_wapper_gen = OptimWrapper(optimizer=optimizer_gen)
    optim_wapper_disc = OptimWrapper(optimizer=optimizer_disc)
    optim_dict = OptimWrapperDict(gen=optim_wapper_gen, disc=optim_wapper_disc)

    print(optim_dict.get_lr())  # {'gen.lr': [0.01], 'disc.lr': [0.01]}
    print(optim_dict.get_momentum())  # {'gen.momentum': [0], 'disc.momentum': [0]}

    # Building from configs, with parameter-wise settings.
    class ToyModel(nn.Module):
        def __init__(self):
            super().__init__()
            self.backbone = nn.ModuleDict(
                dict(layer0=nn.Linear(1, 1), layer1=nn.Linear(1, 1)))
            self.head = nn.Sequential(
                OrderedDict(
                    linear=nn.Linear(1, 1),
                    bn=nn.BatchNorm1d(1)))

    optim_wrapper = dict(
        optimizer=dict(type='SGD', lr=0.01, weight_decay=0.0001),
        paramwise_cfg=dict(norm_decay_mult=0))
    optimizer = build_optim_wrapper(ToyModel(), optim_wrapper)
    print("norm_decay_mult=0:", [g["weight_decay"] for g in optimizer.param_groups])

    optim_wrapper = dict(
        optimizer=dict(type='SGD', lr=0.01, weight_decay=0.0001),
        paramwise_cfg=dict(
            custom_keys={
                'backbone.layer0': dict(lr_mult=0, decay_mult=0),
                'backbone': dict(lr_mult=1),
                'head': dict(lr_mult=0.1)
            }))
    optimizer = build_optim_wrapper(ToyModel(), optim_wrapper)
    print("custom_keys:", [(g["lr"], g["weight_decay"]) for g in optimizer.param_groups])

    for name, val in ToyModel().named_parameters():  # noqa: B007 - the tutorial's loop
        print(name)

    # A constructor of one's own.
    @OPTIM_WRAPPER_CONSTRUCTORS.register_module(force=True)
    class LayerDecayOptimWrapperConstructor(DefaultOptimWrapperConstructor):

        def __init__(self, optim_wrapper_cfg, paramwise_cfg=None):
            super().__init__(optim_wrapper_cfg, paramwise_cfg=None)
            self.decay_factor = paramwise_cfg.get('decay_factor', 0.5)

            super().__init__(optim_wrapper_cfg, paramwise_cfg)

        def add_params(self, params, module, prefix='', lr=None):
            if lr is None:
                lr = self.base_lr

            for name, param in module.named_parameters(recurse=False):
                param_group = dict()
                param_group['params'] = [param]
                param_group['lr'] = lr
                params.append(param_group)
                full_name = f'{prefix}.{name}' if prefix else name
                print_log(f'{full_name} : lr={lr}', logger='current')

            for name, module in module.named_children():  # noqa: B020 - the tutorial's loop
                chiled_prefix = f'{prefix}.{name}' if prefix else name
                self.add_params(
                    params, module, chiled_prefix, lr=lr * self.decay_factor)

    class LayerModel(nn.Module):

        def __init__(self) -> None:
            super().__init__()
            self.layer = nn.ModuleDict(dict(linear=nn.Linear(1, 1)))
            self.linear = nn.Linear(1, 1)

    model = LayerModel()

    optim_wrapper = dict(
        optimizer=dict(type='SGD', lr=0.01, weight_decay=0.0001),
        paramwise_cfg=dict(decay_factor=0.5),
        constructor='LayerDecayOptimWrapperConstructor')

    optimizer = build_optim_wrapper(model, optim_wrapper)
    print("layer decay:", [g["lr"] for g in optimizer.param_groups])


if __name__ == "__main__":
    main()
