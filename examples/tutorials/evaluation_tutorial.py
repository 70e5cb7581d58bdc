"""MMEngine's "Evaluation" tutorial (tutorials/evaluation.md), run with fengine.

The tutorial's ``SimpleAccuracy`` metric on batches of predictions, its ``Evaluator`` with
``Accuracy(top_k=(1, 5))`` evaluating offline, and a validation with that evaluator in a Runner.
Predictions are synthetic tensors in memory: ``fengine.fileio.load`` of the tutorial's pickle
files is left out (a pickle can run code when loaded, and fengine loads none). The tutorial's
``offline_evaluate(data, data_samples)`` passes its arguments in the wrong order; they are given
by keyword here. MMEngine itself has no ``Accuracy`` metric (it comes from MMPretrain); fengine
has one. Usage: ``python evaluation_tutorial.py [DIR]``.
"""

from collections.abc import Sequence

import cifar_stand_in
import numpy as np
import torch
from get_started_tutorial import MMResNet50
from torch.utils.data import DataLoader

from fengine.evaluator import BaseMetric, Evaluator
from fengine.registry import METRICS
from fengine.runner import Runner


@METRICS.register_module()  # register the Accuracy class to the METRICS registry
class SimpleAccuracy(BaseMetric):
    """ Accuracy Evaluator

    Default prefix: ACC

    Metrics:
        - accuracy (float): classification accuracy
    """

    default_prefix = 'ACC'  # set default_prefix

    def process(self, data_batch: Sequence[dict], data_samples: Sequence[dict]):
        # fetch classification prediction results and category labels
        result = {
            'pred': data_samples['pred_label'],
            'gt': data_samples['data_sample']['gt_label']
        }

        # store the results of the current batch into self.results
        self.results.append(result)

    def compute_metrics(self, results: list):
        # aggregate the classification prediction results and category labels for all samples
        preds = np.concatenate([res['pred'] for res in results])
        gts = np.concatenate([res['gt'] for res in results])

        # calculate the classification accuracy
        acc = (preds == gts).sum() / preds.size

        # return evaluation metric results
        return {'accuracy': acc}


def main():
    cifar_stand_in.enter_work_folder()
    generator = torch.Generator().manual_seed(0)
    labels = torch.randint(0, 10, (300,), generator=generator)
    scores = torch.randn(300, 10, generator=generator) + 2.0 * torch.nn.functional.one_hot(labels, 10)

    metric = METRICS.build(dict(type='SimpleAccuracy'))
    for start in range(0, 300, 100):
        batch = {'pred_label': scores[start:start + 100].argmax(1).numpy(),
                 'data_sample': {'gt_label': labels[start:start + 100].numpy()}}
        metric.process(None, batch)
    print("SimpleAccuracy:", {k: round(float(v), 4) for k, v in metric.evaluate(300).items()})

    if METRICS.get('Accuracy') is None:
        return  # MMEngine: the Accuracy metric is MMPretrain's
    evaluator = Evaluator(metrics=dict(type='Accuracy', top_k=(1, 5)))
    data_samples = [{'pred_score': s, 'gt_label': g} for s, g in zip(scores, labels)]
    results = evaluator.offline_evaluate(data_samples=data_samples, chunk_size=128)
    print("offline Accuracy:", {k: round(float(v), 4) for k, v in results.items()})

    runner = Runner(
        model=MMResNet50(),
        work_dir='./work_dir',
        val_dataloader=DataLoader(cifar_stand_in.CIFAR10(train=False), batch_size=32),
        val_cfg=dict(),
        val_evaluator=dict(type='Accuracy', top_k=(1, 5)),
        randomness=dict(seed=0),
    )
    print("untrained model:", {k: round(float(v), 4) for k, v in runner.val().items()})


if __name__ == '__main__':
    main()
