"""MMEngine's "Config" tutorial (advanced_tutorials/config.md), run with fengine.

The tutorial's files are written to a temporary folder, which becomes the working directory (and
is put on ``sys.path`` for ``custom_imports``); every step then runs as the tutorial writes it,
with ``mmengine`` replaced by ``fengine``. Left out: inheriting across repositories
(``mmdet::...``) and ``fengine.hub`` (no downstream packages to read configs from).
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import textwrap
from pathlib import Path

FILES = {
    "learn_read_config.py": """
        test_int = 1
        test_list = [1, 2, 3]
        test_dict = dict(key1='value1', key2=0.1)
    """,
    "learn_read_config.json": """
        {
          "test_int": 1,
          "test_list": [1, 2, 3],
          "test_dict": {"key1": "value1", "key2": 0.1}
        }
    """,
    "learn_read_config.yml": """
        test_int: 1
        test_list: [1, 2, 3]
        test_dict:
          key1: "value1"
          key2: 0.1
    """,
    "config_sgd.py": "optimizer = dict(type='SGD', lr=0.1, momentum=0.9, weight_decay=0.0001)",
    "optimizer_cfg.py": "optimizer = dict(type='SGD', lr=0.02, momentum=0.9, weight_decay=0.0001)",
    "resnet50.py": """
        _base_ = ['optimizer_cfg.py']
        model = dict(type='ResNet', depth=50)
    """,
    "runtime_cfg.py": "gpu_ids = [0, 1]",
    "resnet50_runtime.py": """
        _base_ = ['optimizer_cfg.py', 'runtime_cfg.py']
        model = dict(type='ResNet', depth=50)
    """,
    "resnet50_lr0.01.py": """
        _base_ = ['optimizer_cfg.py', 'runtime_cfg.py']
        model = dict(type='ResNet', depth=50)
        optimizer = dict(lr=0.01)
    """,
    "resnet50_gpu0.py": """
        _base_ = ['optimizer_cfg.py', 'runtime_cfg.py']
        model = dict(type='ResNet', depth=50)
        gpu_ids = [0]
    """,
    "resnet50_delete_key.py": """
        _base_ = ['optimizer_cfg.py', 'runtime_cfg.py']
        model = dict(type='ResNet', depth=50)
        optimizer = dict(_delete_=True, type='SGD', lr=0.01)
    """,
    "refer_base_var.py": """
        _base_ = ['resnet50.py']
        a = {{_base_.model}}
    """,
    "modify_base_var.py": """
        _base_ = ['resnet50.py']
        a = _base_.model
        a.type = 'MobileNet'
    """,
    "predefined_var.py": "work_dir = './work_dir/{{fileBasenameNoExtension}}'",
    "demo_train.py": """
        import argparse

        from fengine.config import Config, DictAction


        def parse_args():
            parser = argparse.ArgumentParser(description='Train a model')
            parser.add_argument('config', help='train config file path')
            parser.add_argument(
                '--cfg-options',
                nargs='+',
                action=DictAction,
                help='override some settings in the used config, the key-value pair '
                'in xxx=yyy format will be merged into config file.')

            args = parser.parse_args()
            return args


        def main():
            args = parse_args()
            cfg = Config.fromfile(args.config)
            if args.cfg_options is not None:
                cfg.merge_from_dict(args.cfg_options)
            print(cfg)


        if __name__ == '__main__':
            main()
    """,
    "example.py": """
        model = dict(type='CustomModel', in_channels=[1, 2, 3])
        optimizer = dict(type='SGD', lr=0.01)
    """,
    "replace_data_root.py": """
        dataset_type = 'CocoDataset'
        data_root = '{{$DATASET:/data/coco/}}'
        dataset=dict(ann_file= data_root + 'train.json')
    """,
    "replace_num_classes.py": """
        model=dict(
            bbox_head=dict(
                num_classes={{'$NUM_CLASSES:80'}}))
    """,
    "my_module.py": """
        from fengine.registry import OPTIMIZERS

        @OPTIMIZERS.register_module()
        class CustomOptim:
            pass
    """,
    "custom_imports.py": """
        custom_imports = dict(imports=['my_module'], allow_failed_imports=False)
        optimizer = dict(type='CustomOptim')
    """,
}


def demo(*argv: str, **env: str) -> None:
    """``python demo_train.py ARGV`` with ``env`` added to the environment."""
    environment = {k: v for k, v in os.environ.items() if k not in ("DATASET", "NUM_CLASSES")}
    done = subprocess.run(
        [sys.executable, "demo_train.py", *argv],
        env={**environment, **env},
        capture_output=True,
        text=True,
        check=True,
    )
    print(done.stdout, end="")


def main() -> None:
    folder = tempfile.mkdtemp(prefix="config_tutorial_")
    os.chdir(folder)
    sys.path.insert(0, folder)
    for name, text in FILES.items():
        with open(name, "w", encoding="utf-8") as handle:
            handle.write(textwrap.dedent(text).strip() + "\n")

    # -- Read the configuration file ----------------------------------------------------------
    from fengine.config import Config

    cfg = Config.fromfile('learn_read_config.py')
    print(cfg)
    for other in ('learn_read_config.json', 'learn_read_config.yml'):
        try:
            print(other, Config.fromfile(other) == cfg)
        except ValueError as error:  # YAML without PyYAML
            print(other, error)

    # -- How to use Config ---------------------------------------------------------------------
    print(cfg.test_int)
    print(cfg.test_list)
    print(cfg.test_dict)
    cfg.test_int = 2

    print(cfg['test_int'])
    print(cfg['test_list'])
    print(cfg['test_dict'])
    cfg['test_list'][1] = 3
    print(cfg['test_list'])

    import torch.nn as nn

    from fengine import Config, optim  # noqa: F401 - the tutorial imports optim too
    from fengine.registry import OPTIMIZERS

    cfg = Config.fromfile('config_sgd.py')

    model = nn.Conv2d(1, 1, 1)
    cfg.optimizer.params = model.parameters()
    optimizer = OPTIMIZERS.build(cfg.optimizer)
    print(type(optimizer).__name__, optimizer.defaults['lr'], optimizer.defaults['momentum'])

    # -- Inheritance ---------------------------------------------------------------------------
    cfg = Config.fromfile('resnet50.py')
    print(cfg.optimizer)
    cfg = Config.fromfile('resnet50_runtime.py')
    print(cfg.optimizer, sorted(cfg))
    cfg = Config.fromfile('resnet50_lr0.01.py')
    print(cfg.optimizer)
    print(Config.fromfile('resnet50_gpu0.py').gpu_ids)
    cfg = Config.fromfile('resnet50_delete_key.py')
    print(cfg.optimizer)
    cfg = Config.fromfile('refer_base_var.py')
    print(cfg.a)
    cfg = Config.fromfile('modify_base_var.py')
    print(cfg.a)

    # -- Dump ----------------------------------------------------------------------------------
    cfg = Config.fromfile('resnet50.py')
    cfg.dump('resnet50_dump.py')
    print(Path('resnet50_dump.py').read_text(), end="")
    cfg.dump('resnet50_dump.json')
    print(Path('resnet50_dump.json').read_text())
    try:
        cfg.dump('resnet50_dump.yaml')
        print(Path('resnet50_dump.yaml').read_text(), end="")
    except ValueError as error:  # YAML without PyYAML
        print(error)
    cfg = Config(dict(a=1, b=2))
    cfg.dump('dump_dict.py')
    print(Path('dump_dict.py').read_text(), end="")

    # -- Advanced usage ------------------------------------------------------------------------
    cfg = Config.fromfile('./predefined_var.py')
    print(cfg.work_dir)
    demo('./example.py', '--cfg-options', 'optimizer.lr=0.1')
    demo('./example.py', '--cfg-options', 'model.in_channels=[1, 1, 1]')
    demo(
        './example.py', '--cfg-options', 'optimizer.type=Adam', '--cfg-options',
        'model.in_channels=[1, 1, 1]',
    )
    demo('replace_data_root.py')
    demo('replace_data_root.py', DATASET='/new/dataset/path/')
    demo('replace_data_root.py', '--cfg-options', 'data_root=/new/dataset/path/')
    demo('replace_num_classes.py')
    demo('replace_num_classes.py', NUM_CLASSES='20')

    cfg = Config.fromfile('custom_imports.py')

    from fengine.registry import OPTIMIZERS

    custom_optim = OPTIMIZERS.build(cfg.optimizer)
    print(type(custom_optim).__module__, type(custom_optim).__name__)


if __name__ == "__main__":
    main()
