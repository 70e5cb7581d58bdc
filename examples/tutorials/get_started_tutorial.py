"""MMEngine's "15 minutes to get started" (get_started/15_minutes.md), run with fengine.

The tutorial's code with ``mmengine`` replaced by ``fengine``; CIFAR-10 and ResNet-50 come from
``cifar_stand_in`` (synthetic images, a small network) and the transforms are left out, as the
stand-in already gives normalised tensors. The run is seeded (``randomness=dict(seed=0)``) and
shortened to 2 epochs so that it repeats exactly. Usage: ``python get_started_tutorial.py [DIR]``.
"""

import cifar_stand_in as torchvision_stand_in
import torch.nn.functional as F
from torch.optim import SGD
from torch.utils.data import DataLoader

from fengine.evaluator import BaseMetric
from fengine.model import BaseModel
from fengine.runner import Runner


class MMResNet50(BaseModel):
    def __init__(self):
        super().__init__()
        self.resnet = torchvision_stand_in.resnet50()

    def forward(self, imgs, labels, mode):
        x = self.resnet(imgs)
        if mode == 'loss':
            return {'loss': F.cross_entropy(x, labels)}
        elif mode == 'predict':
            return x, labels


class Accuracy(BaseMetric):
    def process(self, data_batch, data_samples):
        score, gt = data_samples
        self.results.append({
            'batch_size': len(gt),
            'correct': (score.argmax(dim=1) == gt).sum().cpu(),
        })

    def compute_metrics(self, results):
        total_correct = sum(item['correct'] for item in results)
        total_size = sum(item['batch_size'] for item in results)
        return dict(accuracy=100 * total_correct / total_size)


def main():
    torchvision_stand_in.enter_work_folder()
    train_dataloader = DataLoader(batch_size=32,
                                  shuffle=True,
                                  dataset=torchvision_stand_in.CIFAR10('data/cifar10', train=True))
    val_dataloader = DataLoader(batch_size=32,
                                shuffle=False,
                                dataset=torchvision_stand_in.CIFAR10('data/cifar10', train=False))
    runner = Runner(
        model=MMResNet50(),
        work_dir='./work_dir',
        train_dataloader=train_dataloader,
        optim_wrapper=dict(optimizer=dict(type=SGD, lr=0.01, momentum=0.9)),
        train_cfg=dict(by_epoch=True, max_epochs=2, val_interval=1),
        val_dataloader=val_dataloader,
        val_cfg=dict(),
        val_evaluator=dict(type=Accuracy),
        randomness=dict(seed=0),
    )
    runner.train()


if __name__ == '__main__':
    main()
