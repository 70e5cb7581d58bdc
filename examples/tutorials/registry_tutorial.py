"""MMEngine's "Registry" tutorial (advanced_tutorials/registry.md), the part fengine supports.

A registry of one's own with classes and functions registered and built from configs,
``module_dict``, a child registry that sees its parent's entries, and fengine's ``MODELS``
used by a downstream registry. Not shown here: the tutorial's ``scope``, ``locations``,
``build_func`` and ``init_default_scope`` parts (fengine's registry has them; see
tests/test_registry_scopes.py).
Usage: ``python registry_tutorial.py [DIR]``.
"""

import cifar_stand_in
import torch
import torch.nn as nn

from fengine.registry import MODELS as MMENGINE_MODELS
from fengine.registry import Registry

ACTIVATION = Registry('activation')


# use the register_module
@ACTIVATION.register_module()
class Sigmoid(nn.Module):
    def __init__(self):
        super().__init__()

    def forward(self, x):
        print('call Sigmoid.forward')
        return x


@ACTIVATION.register_module()
class ReLU(nn.Module):
    def __init__(self, inplace=False):
        super().__init__()

    def forward(self, x):
        print('call ReLU.forward')
        return x


@ACTIVATION.register_module()
class Softmax(nn.Module):
    def __init__(self):
        super().__init__()

    def forward(self, x):
        print('call Softmax.forward')
        return x


FUNCTION = Registry('function')


@FUNCTION.register_module()
def print_args(**kwargs):
    print(kwargs)


@MMENGINE_MODELS.register_module()
class RReLU(nn.Module):
    def __init__(self, lower=0.125, upper=0.333, inplace=False):
        super().__init__()

    def forward(self, x):
        print('call RReLU.forward')
        return x


MODELS = Registry('model', parent=MMENGINE_MODELS)


@MODELS.register_module()
class LogSoftmax(nn.Module):
    def __init__(self, dim=None):
        super().__init__()

    def forward(self, x):
        print('call LogSoftmax.forward')
        return x


def main():
    cifar_stand_in.enter_work_folder()
    print(sorted(ACTIVATION.module_dict))

    input = torch.randn(2)

    act_cfg = dict(type='Sigmoid')
    activation = ACTIVATION.build(act_cfg)
    output = activation(input)
    print(torch.equal(output, input))

    act_cfg = dict(type='ReLU', inplace=True)
    activation = ACTIVATION.build(act_cfg)
    output = activation(input)

    func_cfg = dict(type='print_args', a=1, b=2)
    FUNCTION.build(func_cfg)

    model = MODELS.build(cfg=dict(type='LogSoftmax'))
    model(input)
    model = MODELS.build(cfg=dict(type='RReLU', lower=0.2))  # found in the parent
    output = model(input)
    print(type(model).__name__, 'LogSoftmax' in MMENGINE_MODELS.module_dict)


if __name__ == '__main__':
    main()
