"""MMEngine's "Visualization" tutorial (advanced_tutorials/visualization.md), its storage part.

Images, scalars and the config stored through the ``Visualizer`` and its backends, the global
visualizer reached from anywhere, a visualizer built from a config, and a storage backend and a
visualizer of one's own. The image is a synthetic ``(H, W, 3)`` array instead of the downloaded
photo. Left out: the drawing API (``draw_bboxes``, ``draw_texts``, ``draw_circles``,
``draw_featmap``, ``show``), which fengine does not provide, and the TensorBoard and W&B
backends, which need their packages. Usage: ``python visualization_tutorial.py [DIR]``.
"""

import json
import os
from pathlib import Path

import cifar_stand_in
import numpy as np

from fengine.config import Config
from fengine.registry import VISBACKENDS, VISUALIZERS
from fengine.visualization import BaseVisBackend, Visualizer


@VISBACKENDS.register_module()
class DemoVisBackend(BaseVisBackend):
    def add_image(self, *args, **kwargs):
        print("DemoVisBackend.add_image:", args[0], args[1].shape)


@VISUALIZERS.register_module()
class DetLocalVisualizer(Visualizer):
    def add_datasample(self, name, image, data_sample=None, draw_gt=True, draw_pred=True,
                       show=False, wait_time=0, step=0) -> None:
        print("DetLocalVisualizer.add_datasample:", name, image.shape, data_sample)


def main():
    cifar_stand_in.enter_work_folder()
    rng = np.random.default_rng(0)
    image = rng.integers(0, 256, size=(60, 80, 3), dtype=np.uint8)

    # -- Basic storage APIs --------------------------------------------------------------------
    visualizer = Visualizer(image=image,
                            vis_backends=[dict(type='LocalVisBackend')],
                            save_dir='temp_dir')
    visualizer.add_image('demo', visualizer.get_image())
    visualizer.add_image('demo', visualizer.get_image(), step=1)
    visualizer.add_image('demo', visualizer.get_image(), step=3)
    print("images:", sorted(os.listdir('temp_dir/vis_data/vis_image')))

    visualizer.add_scalar('loss', 0.2, step=0)
    visualizer.add_scalar('loss', 0.1, step=1)
    visualizer.add_scalar('acc', 0.7, step=0)
    visualizer.add_scalar('acc', 0.8, step=1)
    visualizer.add_scalars({'loss': 0.3, 'acc': 0.8}, step=3)
    with open('temp_dir/vis_data/scalars.json') as handle:
        print("scalars:", [json.loads(line) for line in handle])

    with open('config_sgd.py', 'w') as handle:
        handle.write("optimizer = dict(type='SGD', lr=0.1, momentum=0.9, weight_decay=0.0001)\n")
    cfg = Config.fromfile('config_sgd.py')
    visualizer.add_config(cfg)
    print("config:", Config.fromfile('temp_dir/vis_data/config.py').optimizer)

    # -- Visualize anywhere --------------------------------------------------------------------
    visualizer1 = Visualizer.get_instance(
        name='vis',
        vis_backends=[dict(type='LocalVisBackend')],
        save_dir='anywhere_dir',
    )
    visualizer2 = Visualizer.get_current_instance()
    visualizer2.add_scalar('map', 0.7, step=0)
    assert id(visualizer1) == id(visualizer2)
    print("anywhere:", Path('anywhere_dir/vis_data/scalars.json').read_text().strip())

    visualizer_cfg = dict(type='Visualizer',
                          name='vis_new',
                          vis_backends=[dict(type='LocalVisBackend')])
    VISUALIZERS.build(visualizer_cfg)
    print("current:", Visualizer.get_current_instance().instance_name)

    # -- Your own backend and visualizer -------------------------------------------------------
    visualizer = Visualizer(vis_backends=[dict(type='DemoVisBackend')],
                            save_dir='temp_dir')
    visualizer.add_image('demo', image)

    visualizer_cfg = dict(type='DetLocalVisualizer',
                          vis_backends=[dict(type='LocalVisBackend')],
                          save_dir='temp_dir',
                          name='visualizer')
    VISUALIZERS.build(visualizer_cfg)
    det_local_visualizer = Visualizer.get_current_instance()
    det_local_visualizer.add_datasample('det', image, None)


if __name__ == '__main__':
    main()
