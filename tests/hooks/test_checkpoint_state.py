"""CheckpointState.confine: a restored state keeps only its own folder's checkpoints."""

from __future__ import annotations

import os
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from fengine.core.effects import LogText, UpdateInfo
from fengine.hooks.checkpoint_plan import CheckpointPlan
from fengine.hooks.checkpoint_state import CheckpointState, confine

FOLDER = "/runs/a"
_PLAN = CheckpointPlan(save_best=("acc", "loss"), rules=("greater", "less"))
_NAMES = _PLAN.name_pattern()
_OWN = [f"{FOLDER}/iter_3.pth", f"{FOLDER}/best_acc_iter_2.pth", f"{FOLDER}/./epoch_1.pth", f"{FOLDER}/x/../best_loss_epoch_4.pth"]
_FOREIGN = [
    "/etc/passwd", "/runs/b/iter_3.pth", f"{FOLDER}/../b/best_acc_iter_1.pth", f"{FOLDER}/sub/iter_1.pth",
    f"{FOLDER}/notes.txt", FOLDER, "/", f"{FOLDER}/iter_x.pth",
]
_paths = st.one_of(st.none(), st.sampled_from(_OWN + _FOREIGN), st.integers(), st.just(b"/etc"))


def _own(path: Any) -> bool:
    if not isinstance(path, str):
        return False
    real = os.path.normpath(path)
    return os.path.dirname(real) == FOLDER and _NAMES.fullmatch(os.path.basename(real)) is not None


@settings(max_examples=40)
@given(
    last=_paths,
    best=st.lists(_paths, max_size=4),
    keep=st.lists(st.one_of(st.integers(-3, 9), st.sampled_from(["../x", "1", True])), max_size=4),
    source=st.sampled_from([f"{FOLDER}/iter_3.pth", "/runs/b/iter_3.pth", f"{FOLDER}/../a/iter_3.pth"]),
)
def test_only_paths_of_the_own_folder_survive(last: Any, best: list[Any], keep: list[Any], source: str) -> None:
    state = CheckpointState(
        keep_ckpt_ids=tuple(keep), last_ckpt=last, last_step=3, best_scores=tuple(1.0 for _ in best), best_ckpts=tuple(best)
    )
    confined, effects = confine(state, FOLDER, _NAMES, _PLAN.save_best, source, os.path.normpath)
    # What survives is this folder's own checkpoints, unchanged; everything else is gone.
    assert confined.last_ckpt == (last if last is None or _own(last) else None)
    assert confined.last_step == (3 if last is None or _own(last) else None)
    expected_best = [p if p is None or _own(p) else None for p in best[:2]]
    assert list(confined.best_ckpts) == expected_best + [None] * (len(confined.best_ckpts) - len(expected_best))
    assert all(p is None for p in confined.best_ckpts[2:])  # no path past the save_best entries survives
    for index, path in enumerate(best[:2]):  # a dropped best takes its score along; a kept one keeps it
        assert confined.best_scores[index] == (1.0 if path is None or _own(path) else None)
    same_folder = os.path.dirname(os.path.normpath(source)) == FOLDER
    assert confined.keep_ckpt_ids == (tuple(k for k in keep if type(k) is int and k >= 0) if same_folder else ())
    # One warning naming every dropped path, and the hub mirror updated, exactly when something went.
    changed = confined != state
    assert bool(effects) == changed
    if changed:
        warning, info = effects
        assert isinstance(warning, LogText) and warning.level == 30 and isinstance(info, UpdateInfo)
        for path in [last, *best]:
            if path is not None and not _own(path):
                assert repr(path) in warning.message
        if confined.last_ckpt is None and last is not None:
            assert "last_ckpt" in info.pop


def test_the_names_a_plan_gives_its_checkpoints() -> None:
    names = CheckpointPlan(filename_tmpl="ckpts/model_{:04d}.pth").name_pattern()
    assert names.fullmatch("model_0012.pth") and names.fullmatch("best_acc_model_0012.pth")
    assert not names.fullmatch("epoch_1.pth") and not names.fullmatch("model_.pth")
    default = CheckpointPlan().name_pattern()
    assert all(default.fullmatch(n) for n in ("epoch_3.pth", "iter_12.pth", "best_coco_bbox_mAP_epoch_3.pth"))
    assert not any(default.fullmatch(n) for n in ("epoch_3.pth.bak", "notes.pth", "iter_-1.pth", "../iter_1.pth"))
