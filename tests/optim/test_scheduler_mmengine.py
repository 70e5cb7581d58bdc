"""Differential checks against MMEngine itself (skipped without it): random composite configs,
and resuming from MMEngine's own scheduler state dicts.

MMEngine is never imported here: a separate interpreter that has it (``MMENGINE_PYTHON``, default
``/tmp/mmenv/bin/python``) runs the same toy loop on the same configs, and the values must agree
within 1e-12 relative, including which configs fail. MMEngine's state dicts, loaded into
schedulers built with other arguments, must continue exactly as MMEngine does.
"""

from __future__ import annotations

import json
import os
import random
import subprocess
from typing import Any

import pytest
import torch

import fengine.optim.scheduler as sch

PYTHON = os.environ.get("MMENGINE_PYTHON", "/tmp/mmenv/bin/python")

# The loop both sides run: build each config as the Runner does, then ParamSchedulerHook's order.
LOOP = """
import copy, torch

def run_case(case, build_one):
    groups = [dict(params=[torch.nn.Parameter(torch.zeros(1))], lr=lr) for lr in case["lrs"]]
    optimizer = torch.optim.SGD(groups, lr=case["lrs"][0])
    try:
        schedulers = []
        for cfg in case["cfgs"]:
            cfg = copy.deepcopy(cfg)
            cfg.setdefault("end", case["epochs"] if cfg.get("by_epoch", True) else case["iters"])
            schedulers.append(build_one(cfg, optimizer, case["length"]))
        values = []
        for i in range(case["iters"]):
            values.append([g["lr"] for g in optimizer.param_groups])
            for s in schedulers:
                if not s.by_epoch:
                    s.step()
            if (i + 1) % case["length"] == 0:
                for s in schedulers:
                    if s.by_epoch:
                        s.step()
        return values
    except Exception as error:
        return type(error).__name__
"""

MMENGINE_MAIN = """
import json, sys
import mmengine.optim
from mmengine.registry import PARAM_SCHEDULERS

def build_one(cfg, optimizer, length):
    return PARAM_SCHEDULERS.build(cfg, default_args=dict(optimizer=optimizer, epoch_length=length))

print(json.dumps([run_case(case, build_one) for case in json.load(sys.stdin)]))
"""


def random_config(rng: random.Random, epochs: int) -> dict[str, Any]:
    family = rng.choice(
        ["ConstantLR", "LinearLR", "CosineAnnealingLR", "CosineRestartLR", "MultiStepLR",
         "StepLR", "ExponentialLR", "PolyLR", "OneCycleLR"]
    )  # fmt: skip
    by_epoch = rng.random() < 0.5
    span = epochs if by_epoch else epochs * 3
    cfg: dict[str, Any] = {"type": family, "by_epoch": by_epoch}
    begin = rng.randrange(0, span // 2 + 1)
    cfg["begin"] = begin
    if rng.random() < 0.6:
        cfg["end"] = rng.randrange(begin + 1, span + 2)
    if by_epoch and rng.random() < 0.5:
        cfg["convert_to_iter_based"] = True
    low = rng.choice([{"eta_min": rng.uniform(0, 0.01)}, {"eta_min_ratio": rng.uniform(0, 0.5)}])
    if family == "ConstantLR":
        cfg["factor"] = rng.uniform(0.1, 1.0)
    elif family == "LinearLR":
        cfg.update(start_factor=rng.uniform(0.05, 1.0), end_factor=rng.uniform(0.0, 1.0))
    elif family == "CosineAnnealingLR":
        cfg.update(low, T_max=rng.choice([None, rng.randrange(1, 6)]))
    elif family == "CosineRestartLR":
        periods = [rng.randrange(1, 5) for _ in range(rng.randrange(1, 4))]
        cfg.update(low, periods=periods, restart_weights=[rng.uniform(0.2, 1) for _ in periods])
    elif family == "MultiStepLR":
        cfg.update(milestones=sorted(rng.sample(range(span), 2)), gamma=rng.uniform(0.1, 0.9))
    elif family == "StepLR":
        cfg.update(step_size=rng.randrange(1, 4), gamma=rng.uniform(0.1, 0.9))
    elif family == "ExponentialLR":
        cfg["gamma"] = rng.uniform(0.5, 0.99)
    elif family == "PolyLR":
        cfg.update(eta_min=rng.uniform(0, 0.01), power=rng.uniform(0.5, 3))
    else:
        cfg.update(
            eta_max=rng.uniform(0.1, 1.0), pct_start=rng.uniform(0.1, 0.9),
            anneal_strategy=rng.choice(["cos", "linear"]), three_phase=rng.random() < 0.5,
        )  # fmt: skip
    return cfg


def random_cases(seed: int, count: int) -> list[dict[str, Any]]:
    rng = random.Random(seed)
    cases = []
    for _ in range(count):
        epochs, length = rng.randrange(2, 6), rng.randrange(1, 4)
        cases.append(
            {
                "lrs": [rng.uniform(0.01, 1.0) for _ in range(rng.randrange(1, 3))],
                "epochs": epochs,
                "length": length,
                "iters": epochs * length,
                "cfgs": [random_config(rng, epochs) for _ in range(rng.randrange(1, 4))],
            }
        )
    # Two OneCycle schedulers on one group share MMEngine's group keys (max_lr, ...), so there
    # the later one's bounds leak into the earlier one; fengine keeps each its own (documented).
    return [c for c in cases if sum(cfg["type"] == "OneCycleLR" for cfg in c["cfgs"]) < 2]


def build_one(cfg: dict[str, Any], optimizer: Any, length: int) -> Any:
    built = sch.build_param_schedulers(optimizer, cfg, epoch_length=length)
    assert isinstance(built, list)
    return built[0]


@pytest.mark.skipif(not os.path.exists(PYTHON), reason=f"no interpreter with MMEngine at {PYTHON}")
def test_random_composite_configs_match_mmengine() -> None:
    cases = random_cases(seed=20240607, count=150)
    completed = subprocess.run(
        [PYTHON, "-c", LOOP + MMENGINE_MAIN],
        input=json.dumps(cases), capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip
    if completed.returncode != 0 and "No module named 'mmengine'" in completed.stderr:
        pytest.skip(f"{PYTHON} has no mmengine")
    assert completed.returncode == 0, completed.stderr[-2000:]
    theirs = json.loads(completed.stdout.strip().splitlines()[-1])
    namespace: dict[str, Any] = {}
    exec(LOOP, namespace)
    ours = [namespace["run_case"](case, build_one) for case in cases]
    failures = sum(isinstance(t, str) for t in theirs)
    assert failures < len(cases) // 4  # the comparison is mostly about values
    for case, mine, reference in zip(cases, ours, theirs):
        if isinstance(reference, str):
            assert isinstance(mine, str), (case, reference)
            continue
        assert not isinstance(mine, str), (case, mine)
        flat_mine = [v for row in mine for v in row]
        flat_ref = [v for row in reference for v in row]
        assert flat_mine == pytest.approx(flat_ref, rel=1e-12, abs=0), case


MMENGINE_STATES = """
import copy, sys, torch
import mmengine.optim.scheduler as M

def run(k, s):
    if k == "plateau":
        s.step()
        s.step({"loss": 1.0})
    else:
        s.step()

out = {}
for k, name, kwargs in CASES:
    o = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=0.1, momentum=0.9)
    s = getattr(M, name)(o, **kwargs)
    for _ in range(3):
        run(k, s)
    state = {key: v for key, v in s.state_dict().items() if key != "anneal_func"}
    opt_state = copy.deepcopy(o.state_dict())
    values = []
    for _ in range(4):
        run(k, s)
        values.append(s.get_last_value()[0])
    out[k] = dict(opt=opt_state, sched=state, values=values)
torch.save(out, sys.argv[1])
"""

# (key, class, MMEngine's constructor arguments, fengine's deliberately different ones)
STATE_CASES = [
    ("ms", "MultiStepLR", {"milestones": [1, 3], "gamma": 0.5, "end": 6}, {"milestones": [1]}),
    ("cos", "CosineAnnealingLR", {"eta_min_ratio": 0.1, "end": 8, "by_epoch": False}, {}),
    (
        "restart",
        "CosineRestartLR",
        {"periods": [2, 3], "restart_weights": [1, 0.5], "eta_min": 0.01, "by_epoch": False},
        {"periods": [5], "eta_min": 0.0},
    ),
    ("onecycle", "OneCycleLR", {"eta_max": 0.5, "total_steps": 10, "by_epoch": False}, None),
    ("poly", "PolyMomentum", {"eta_min": 0.1, "end": 7, "by_epoch": False}, {}),
    ("plateau", "ReduceOnPlateauLR", {"patience": 0}, {}),
]


@pytest.mark.skipif(not os.path.exists(PYTHON), reason=f"no interpreter with MMEngine at {PYTHON}")
def test_mmengine_scheduler_state_dicts_resume_identically(tmp_path: Any) -> None:
    cases = [(k, name, mm) for k, name, mm, _ in STATE_CASES]
    path = tmp_path / "states.pth"
    script = f"CASES = {cases!r}\n" + MMENGINE_STATES
    completed = subprocess.run(
        [PYTHON, "-c", script, str(path)], capture_output=True, text=True, timeout=120, check=False
    )
    if completed.returncode != 0 and "No module named 'mmengine'" in completed.stderr:
        pytest.skip(f"{PYTHON} has no mmengine")
    assert completed.returncode == 0, completed.stderr[-2000:]
    saved = torch.load(path, weights_only=False)  # MMEngine keeps milestones in a Counter
    for key, name, mm_kwargs, ours_kwargs in STATE_CASES:
        optimizer = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=0.1, momentum=0.9)
        scheduler = getattr(sch, name)(
            optimizer, **(mm_kwargs if ours_kwargs is None else ours_kwargs)
        )
        optimizer.load_state_dict(saved[key]["opt"])
        scheduler.load_state_dict(saved[key]["sched"])
        values = []
        for _ in range(4):
            if key == "plateau":
                scheduler.step()
                scheduler.step({"loss": 1.0})
            else:
                scheduler.step()
            values.append(scheduler.get_last_value()[0])
        assert values == saved[key]["values"], key
