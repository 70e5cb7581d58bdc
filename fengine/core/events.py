"""Every point at which the shell calls the hook pipeline."""

from __future__ import annotations

import enum

from fengine.core import plain


@plain.register("events.Event")
class Event(str, enum.Enum):
    """A hook point. Values are MMEngine's ``Hook`` method names, so a class hook maps 1:1."""

    BEFORE_RUN = "before_run"
    AFTER_RUN = "after_run"
    BEFORE_TRAIN = "before_train"
    AFTER_TRAIN = "after_train"
    BEFORE_VAL = "before_val"
    AFTER_VAL = "after_val"
    BEFORE_TEST = "before_test"
    AFTER_TEST = "after_test"
    BEFORE_TRAIN_EPOCH = "before_train_epoch"
    AFTER_TRAIN_EPOCH = "after_train_epoch"
    BEFORE_VAL_EPOCH = "before_val_epoch"
    AFTER_VAL_EPOCH = "after_val_epoch"
    BEFORE_TEST_EPOCH = "before_test_epoch"
    AFTER_TEST_EPOCH = "after_test_epoch"
    BEFORE_TRAIN_ITER = "before_train_iter"
    AFTER_TRAIN_ITER = "after_train_iter"
    BEFORE_VAL_ITER = "before_val_iter"
    AFTER_VAL_ITER = "after_val_iter"
    BEFORE_TEST_ITER = "before_test_iter"
    AFTER_TEST_ITER = "after_test_iter"
    BEFORE_SAVE_CHECKPOINT = "before_save_checkpoint"
    AFTER_LOAD_CHECKPOINT = "after_load_checkpoint"

    @property
    def mode(self) -> str | None:
        """``'train'``, ``'val'`` or ``'test'`` for loop events, ``None`` for run-level ones."""
        for mode in ("train", "val", "test"):
            if self.value.endswith((f"_{mode}", f"_{mode}_epoch", f"_{mode}_iter")):
                return mode
        return None


#: MMEngine's ``Hook.stages``: the order in which ``get_hooks_info`` lists stages.
STAGES: tuple[Event, ...] = (
    Event.BEFORE_RUN,
    Event.AFTER_LOAD_CHECKPOINT,
    Event.BEFORE_TRAIN,
    Event.BEFORE_TRAIN_EPOCH,
    Event.BEFORE_TRAIN_ITER,
    Event.AFTER_TRAIN_ITER,
    Event.AFTER_TRAIN_EPOCH,
    Event.BEFORE_VAL,
    Event.BEFORE_VAL_EPOCH,
    Event.BEFORE_VAL_ITER,
    Event.AFTER_VAL_ITER,
    Event.AFTER_VAL_EPOCH,
    Event.AFTER_VAL,
    Event.BEFORE_SAVE_CHECKPOINT,
    Event.AFTER_TRAIN,
    Event.BEFORE_TEST,
    Event.BEFORE_TEST_EPOCH,
    Event.BEFORE_TEST_ITER,
    Event.AFTER_TEST_ITER,
    Event.AFTER_TEST_EPOCH,
    Event.AFTER_TEST,
    Event.AFTER_RUN,
)
