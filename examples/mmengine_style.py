"""MMEngine code on fengine: the usage examples of MMEngine's models-and-hooks API, run together.

Each block below is one of the familiar examples with ``mmengine`` replaced by ``fengine`` in
the imports: a ``BaseModel`` subclass, a custom validation hook, hook priorities, the built-in
hooks, a model with a data preprocessor, and the model utilities. They train on generated
images (4 colours of noise), so the script needs nothing but fengine.

    python examples/mmengine_style.py                    # 6 epochs, a few seconds
    python examples/mmengine_style.py --work-dir /tmp/x  # where checkpoints and logs go
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from typing import Any

import torch
import torch.nn as nn

from fengine import Runner
from fengine.dataset import InMemoryDataset
from fengine.hooks import Hook
from fengine.model import BaseModel, convert_sync_batchnorm, detect_anomalous_params
from fengine.runner import get_priority

NUM_CLASSES = 4


# --- Basic Model Implementation -----------------------------------------------------------------
class MyModel(BaseModel):
    def __init__(self, num_classes: int = 10, init_cfg: Any = None) -> None:
        super().__init__(init_cfg=init_cfg)
        self.backbone = nn.Sequential(
            nn.Conv2d(3, 64, 3, padding=1), nn.ReLU(), nn.AdaptiveAvgPool2d(1)
        )
        self.head = nn.Linear(64, num_classes)

    def forward(self, inputs: torch.Tensor) -> torch.Tensor:  # type: ignore[override]
        x = self.backbone(inputs)
        x = x.flatten(1)
        return self.head(x)  # type: ignore[no-any-return]

    def train_step(self, data: Any, optim_wrapper: Any) -> Any:
        inputs = data["inputs"]
        labels = data["labels"]
        logits = self(inputs)
        loss = nn.CrossEntropyLoss()(logits, labels)
        parsed_loss, log_vars = self.parse_losses({"loss": loss})
        optim_wrapper.update_params(parsed_loss)
        return log_vars  # the loss for the logger (the seed returns it inside a dict)

    def val_step(self, data: Any) -> Any:
        # Added for validation: (scores, labels), the pair the Accuracy metric reads.
        return self(data["inputs"]), data["labels"]


# --- Custom Hook Implementation -----------------------------------------------------------------
class CustomValidationHook(Hook):
    def __init__(self, val_interval: int = 1) -> None:
        self.val_interval = val_interval

    def after_train_epoch(self, runner: Any) -> None:
        if (runner.epoch + 1) % self.val_interval == 0:
            runner.val()

            # Custom validation logic. Validation metrics reach the message hub as
            # 'val/<name>' (the Accuracy metric's name is 'accuracy').
            val_metrics = runner.message_hub.get_scalar("val/accuracy")
            if val_metrics.current() > 0.95:
                runner.logger.info("High accuracy achieved!")


# --- Priority-based Hook Ordering ---------------------------------------------------------------
class HighPriorityHook(Hook):
    priority = "HIGH"  # or get_priority('HIGH')
    calls = 0

    def before_train_iter(self, runner: Any, batch_idx: int, data_batch: Any = None) -> None:
        # This runs before normal priority hooks
        type(self).calls += 1


class LowPriorityHook(Hook):
    priority = "LOW"
    calls = 0

    def after_train_iter(
        self, runner: Any, batch_idx: int, data_batch: Any = None, outputs: Any = None
    ) -> None:
        # This runs after normal priority hooks
        type(self).calls += 1


def colour_images(n: int, seed: int) -> InMemoryDataset:
    """``n`` noisy 8x8 RGB images whose class is their mean colour."""
    generator = torch.Generator().manual_seed(seed)
    colours = torch.tensor([[1.0, 0.0, 0.0], [0.0, 1.0, 0.0], [0.0, 0.0, 1.0], [1.0, 1.0, 0.0]])
    labels = torch.arange(n) % NUM_CLASSES
    images = colours[labels][:, :, None, None] + 0.8 * torch.randn(n, 3, 8, 8, generator=generator)
    return InMemoryDataset(inputs=images, labels=labels)


def loader(dataset: InMemoryDataset, shuffle: bool) -> dict[str, Any]:
    return dict(
        dataset=dataset,
        sampler=dict(type="DefaultSampler", shuffle=shuffle),
        collate_fn=dict(type="default_collate"),
        batch_size=32,
    )


def train(work_dir: str | None, epochs: int) -> Runner:
    """The built-in hooks example, with the hooks above, training ``MyModel``."""
    model = MyModel(num_classes=NUM_CLASSES)

    # --- Using Built-in Hooks -------------------------------------------------------------------
    default_hooks = dict(
        timer=dict(type="IterTimerHook"),
        logger=dict(type="LoggerHook", interval=4),  # 100 in the original: this run is shorter
        param_scheduler=dict(type="ParamSchedulerHook"),
        sampler_seed=dict(type="DistSamplerSeedHook"),
        checkpoint=dict(type="CheckpointHook", interval=1, save_best="auto", max_keep_ckpts=3),
    )
    custom_hooks = [
        # momentum 0.0002 in the original suits runs of many thousand iterations; this one has 48.
        dict(type="EMAHook", momentum=0.05, priority=49),
        HighPriorityHook(),
        LowPriorityHook(),
    ]
    runner = Runner(
        model=model,
        work_dir=work_dir,
        train_dataloader=loader(colour_images(256, seed=1), shuffle=True),
        val_dataloader=loader(colour_images(64, seed=2), shuffle=False),
        optim_wrapper=dict(optimizer=dict(type="SGD", lr=0.1, momentum=0.9)),
        param_scheduler=dict(type="MultiStepLR", milestones=[4], gamma=0.1),
        train_cfg=dict(by_epoch=True, max_epochs=epochs, val_interval=3),
        val_cfg=dict(),
        val_evaluator=dict(type="Accuracy"),
        default_hooks=default_hooks,
        custom_hooks=custom_hooks,
        randomness=dict(seed=0),
    )
    # Register and use hook
    runner.register_hook(CustomValidationHook(val_interval=5))
    runner.train()
    return runner


def data_preprocessor_example() -> tuple[int, ...]:
    """The 'Model with Data Preprocessor' example: normalise, convert BGR to RGB, pad to 32."""
    model = BaseModel(
        data_preprocessor=dict(
            type="ImgDataPreprocessor",
            mean=[123.675, 116.28, 103.53],
            std=[58.395, 57.12, 57.375],
            bgr_to_rgb=True,
            pad_size_divisor=32,
        )
    )
    images = [
        torch.randint(0, 256, (3, 50, 60), dtype=torch.uint8),
        torch.randint(0, 256, (3, 40, 70), dtype=torch.uint8),
    ]
    batch = model.data_preprocessor({"inputs": images}, False)
    return tuple(batch["inputs"].shape)


def model_utilities_example() -> tuple[str, dict[str, str]]:
    """The 'Model Utilities Usage' example: SyncBatchNorm conversion and unused-parameter checks."""
    model = nn.Sequential(nn.Conv2d(3, 8, 3), nn.BatchNorm2d(8), nn.ReLU())
    # Convert model for distributed training
    model = convert_sync_batchnorm(model)
    converted = type(model[1]).__name__

    class TwoHeads(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.body, self.used, self.unused = nn.Linear(4, 4), nn.Linear(4, 1), nn.Linear(4, 1)

        def forward(self, data: torch.Tensor) -> torch.Tensor:
            return self.used(self.body(data)).pow(2).mean()

    found: dict[str, str] = {}

    # Check for anomalous parameters during training
    def training_step(
        model: nn.Module, data: torch.Tensor, optimizer: torch.optim.Optimizer
    ) -> None:
        loss = model(data)

        # Check for anomalies
        anomalous = detect_anomalous_params(loss, model)
        if anomalous:
            print(f"Anomalous parameters detected: {anomalous}")
            found.update(anomalous)
        loss.backward()
        optimizer.step()

    net = TwoHeads()
    training_step(net, torch.randn(8, 4), torch.optim.SGD(net.parameters(), lr=0.1))
    return converted, found


def main(argv: Sequence[str] | None = None) -> dict[str, Any]:
    """Run every example; print and return what each showed."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--work-dir", help="default: ./work_dirs/<timestamp>")
    parser.add_argument("--epochs", type=int, default=6)
    args = parser.parse_args(argv)

    runner = train(args.work_dir, args.epochs)
    order = [f"{type(h).__name__}({get_priority(h.priority)})" for h in runner.hooks]
    accuracy = runner.message_hub.get_scalar("val/accuracy").current()
    shape = data_preprocessor_example()
    converted, anomalous = model_utilities_example()
    print(f"hooks in the order they run: {', '.join(order)}")
    print(
        f"HighPriorityHook ran {HighPriorityHook.calls} times, LowPriorityHook {LowPriorityHook.calls}"
    )
    print(f"validation accuracy (EMA weights): {accuracy:.4f}; checkpoints in {runner.work_dir}")
    print(f"ImgDataPreprocessor batched a 50x60 and a 40x70 image into {shape}")
    print(f"convert_sync_batchnorm made a {converted}; unused parameters: {sorted(anomalous)}")
    return {
        "accuracy": accuracy,
        "order": order,
        "shape": shape,
        "converted": converted,
        "anomalous": anomalous,
        "work_dir": runner.work_dir,
    }


if __name__ == "__main__":
    main()
