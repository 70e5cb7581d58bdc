"""A checkpoint is data, never code: crafted files name any callable, and nothing is ever called.

The payloads are live (a resolver of ``module:qualname`` names, as checkpoints once used, runs
them: see the first test); every way fengine reads a checkpoint refuses them with
:class:`UntrustedCheckpointError` naming the tag, the key path and the file, and no file appears.
"""

from __future__ import annotations

import ast
import builtins
import contextlib
import copy
import functools
import importlib
import io
import operator
import os
import pickle
import posix
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import attrs
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

import fengine
from fengine.core import FnHook, TrainState, plain
from fengine.core.events import Event
from fengine.core.plain import UntrustedCheckpointError
from fengine.hooks import EMAHook, Hook
from fengine.logging import MessageHub
from fengine.model.pretrained import read_state_dict
from fengine.runner import Runner, load_checkpoint, save_checkpoint
from fengine.runner import UntrustedCheckpointError as RunnerUntrustedCheckpointError
from fengine.runner.checkpoint import read_checkpoint, write_last_checkpoint
from fengine.testing import check_hook, through_checkpoint, train_states
from fengine.testing.contracts import ContractError, canonical

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "runner"))
from runner_toys import ToyModel, toy_kwargs

MARK = "pwned-by-checkpoint"
CALLS: list[str] = []


class SideEffect:
    """A user class whose construction has an effect (not registered)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        CALLS.append(f"SideEffect{args}{kwargs}")


@attrs.frozen
class SideEffectRecord:
    """An attrs record with a construction effect (not registered)."""

    args: Any = None

    def __attrs_post_init__(self) -> None:
        CALLS.append("SideEffectRecord")


@plain.register("tests.security.Guarded")
@attrs.frozen
class Guarded:
    """A registered record with a construction effect: undeclared fields must stop it first."""

    value: int = 0

    def __attrs_post_init__(self) -> None:
        CALLS.append(f"Guarded({self.value})")


@plain.register("tests.security.CountState")
@attrs.frozen
class CountState:
    """A user's hook state, registered as the README says."""

    seen: int = 0
    last_loss: float | None = None


class CountingHook(Hook):
    """A user's stateful hook: counts training iterations in a registered record."""

    def to_fn_hook(self, name: str) -> FnHook[CountState]:
        def count(run: Any, own: CountState, info: Any) -> tuple[Any, CountState]:
            return run, CountState(own.seen + 1, float(info.outputs["loss"]))

        return FnHook(name=name, priority="NORMAL", init=CountState(), on={Event.AFTER_TRAIN_ITER: count})


# -- the payloads -------------------------------------------------------------------------------


def payloads(pwned: Path) -> list[dict[str, Any]]:
    """Entries that, resolved by ``module:qualname`` and called, create ``pwned``."""
    return [
        {"__enum__": "os:system", "value": f"touch {pwned}"},
        {"__record__": "subprocess:Popen", "fields": {"args": ["touch", str(pwned)]}},
        {"__enum__": "builtins:eval", "value": f"__import__('os').system('touch {pwned}')"},
    ]


def _naive(value: Any) -> Any:
    """How checkpoints were once decoded: resolve ``module:qualname`` and call it."""
    if isinstance(value, dict) and ("__enum__" in value or "__record__" in value):
        module, _, name = (value.get("__enum__") or value["__record__"]).partition(":")
        target = getattr(importlib.import_module(module), name)
        return target(value["value"]) if "__enum__" in value else target(**value["fields"])
    return value


def test_the_payloads_are_live(tmp_path: Path) -> None:
    """The control: an old-style resolver runs every payload (so the tests below can fail)."""
    for i, payload in enumerate(payloads(tmp_path / "x")):
        target = tmp_path / f"control{i}"
        text = repr(payload).replace(str(tmp_path / "x"), str(target))
        result = _naive(ast.literal_eval(text))
        if isinstance(result, subprocess.Popen):
            result.wait()
        assert target.exists()


# -- the fuzz: nested plain data whose tags name arbitrary callables ------------------------------

CALLABLE_TAGS = [
    "os:system", "os.system", "posix:system", "subprocess:Popen", "subprocess.Popen",
    "builtins:eval", "builtins:exec", "builtins.exec", "functools:partial", "operator:attrgetter",
    "torch:load", "torch.load", "pickle:loads", "importlib:import_module", "fengine.core.plain:load",
    "fengine.core.ema:EMAState", "fengine.core.ema.record:EMAState",
    f"{__name__}:SideEffect", f"{__name__}:SideEffectRecord", "test_untrusted_checkpoints:SideEffect",
]
RECORD_TAGS = sorted(t for t, c in plain.registered().items() if attrs.has(c))
ENUM_TAGS = sorted(t for t, c in plain.registered().items() if not attrs.has(c))
marked = st.sampled_from([MARK, f"touch /tmp/{MARK}", [MARK, "-c", MARK], {"cmd": MARK}])


@st.composite
def refused_entries(draw: st.DrawFn) -> tuple[dict[str, Any], Any]:
    """A tagged entry the decoder must refuse, and the tag its error must name."""
    kind = draw(st.sampled_from(["callable-record", "callable-enum", "undeclared", "record-as-enum", "enum-as-record"]))
    if kind == "callable-record":
        tag = draw(st.sampled_from(CALLABLE_TAGS))
        fields = draw(st.dictionaries(st.sampled_from(["args", "cmd", "source", "value", "f", "path"]), marked, max_size=3))
        return {"__record__": tag, "fields": fields}, tag
    if kind == "callable-enum":
        tag = draw(st.sampled_from(CALLABLE_TAGS))
        return {"__enum__": tag, "value": draw(marked)}, tag
    if kind == "undeclared":
        tag = draw(st.sampled_from([*RECORD_TAGS, "tests.security.Guarded"]))
        return {"__record__": tag, "fields": {f"x_{draw(st.sampled_from(['cmd', 'init', 'args']))}": draw(marked)}}, tag
    if kind == "record-as-enum":
        tag = draw(st.sampled_from(RECORD_TAGS))
        return {"__enum__": tag, "value": draw(marked)}, tag
    tag = draw(st.sampled_from(ENUM_TAGS))
    return {"__record__": tag, "fields": {"value": draw(marked)}}, tag


honest_leaves = st.one_of(st.none(), st.integers(), st.text(max_size=4), st.floats(allow_nan=False), st.just(torch.ones(2)))


@st.composite
def nested(draw: st.DrawFn) -> tuple[Any, Any, str]:
    """``(data, tag, path)``: the refused entry placed at ``path`` inside honest plain data."""
    entry, tag = draw(refused_entries())
    value: Any = entry
    path: list[str] = []
    for _ in range(draw(st.integers(0, 4))):
        how = draw(st.sampled_from(["dict", "list", "tuple", "record"]))
        if how == "dict":
            key = draw(st.text("abcxyz_", min_size=1, max_size=5))
            before = draw(st.dictionaries(st.text("ABC", min_size=1, max_size=3), honest_leaves, max_size=2))
            value, path = {**before, key: value}, [f".{key}", *path]
        elif how in ("list", "tuple"):
            before = draw(st.lists(honest_leaves, max_size=2))
            items = [*before, value, *draw(st.lists(honest_leaves, max_size=2))]
            value, path = (items if how == "list" else tuple(items)), [f"[{len(before)}]", *path]
        else:  # inside a registered record's field: rejected before the record is built
            value = {"__record__": "ema.EMAState", "fields": {"params": {"w": value}, "buffers": {}, "steps": 0}}
            path = [".params.w", *path]
    top = draw(st.sampled_from(["message_hub", "hook_states", "rng", "data_position", "state_dict"]))
    return {top: value}, tag, top + "".join(path)


@contextlib.contextmanager
def recording(calls: list[str]) -> Iterator[None]:
    """Every named callable replaced by a recorder for calls carrying the payload mark."""

    def carries_mark(args: Any) -> bool:
        return MARK in repr(args)

    def recorder(name: str, original: Callable[..., Any]) -> Callable[..., Any]:
        @functools.wraps(original)
        def record(*args: Any, **kwargs: Any) -> Any:
            if carries_mark((args, kwargs)):
                calls.append(name)
                return None
            return original(*args, **kwargs)

        return record

    targets = [
        (os, "system"), (posix, "system"), (subprocess, "Popen"), (subprocess, "run"),
        (builtins, "eval"), (builtins, "exec"), (functools, "partial"), (operator, "attrgetter"),
        (importlib, "import_module"), (torch, "load"), (pickle, "loads"), (plain, "load"),
    ]
    saved = [(owner, name, getattr(owner, name)) for owner, name in targets]
    try:
        for owner, name, original in saved:
            setattr(owner, name, recorder(f"{owner.__name__}.{name}", original))
        yield
    finally:
        for owner, name, original in saved:
            setattr(owner, name, original)


@settings(max_examples=40)
@given(nested())
def test_no_tag_ever_calls_anything(case: tuple[Any, Any, str]) -> None:
    data, tag, path = case
    buffer = io.BytesIO()
    torch.save(data, buffer)
    buffer.seek(0)
    loaded = plain.load(buffer, decode=False)  # what torch.load(weights_only=True) accepts
    calls: list[str] = []
    CALLS.clear()
    with recording(calls), pytest.raises(UntrustedCheckpointError) as caught:
        plain.from_plain(loaded, source="crafted.pth")
    assert calls == [] and CALLS == []
    assert (caught.value.tag, caught.value.where, caught.value.source) == (tag, path, "crafted.pth")
    assert f"refused {tag!r} at {path} of checkpoint 'crafted.pth'" in str(caught.value)
    buffer.seek(0)
    with pytest.raises(UntrustedCheckpointError):
        plain.load(buffer)
    assert CALLS == []


def test_the_error_is_public_and_a_value_error() -> None:
    assert fengine.core.UntrustedCheckpointError is UntrustedCheckpointError is RunnerUntrustedCheckpointError
    assert issubclass(UntrustedCheckpointError, ValueError)


# -- crafted checkpoints through every reading path ---------------------------------------------


def _kwargs(work_dir: Path, **overrides: Any) -> dict[str, Any]:
    return toy_kwargs(
        work_dir,
        train_cfg={"by_epoch": True, "max_epochs": 1, "val_interval": 1},
        default_hooks={"checkpoint": {"type": "CheckpointHook", "interval": 1}},
        custom_hooks=[EMAHook(), CountingHook()],
        **overrides,
    )


@pytest.fixture(scope="module")
def honest(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """A real one-epoch checkpoint (EMA and a user's registered hook state), as stored."""
    work_dir = tmp_path_factory.mktemp("honest")
    Runner(**_kwargs(work_dir)).train()
    return read_checkpoint(str(work_dir / "epoch_1.pth"), decode=False)


LOCATIONS: dict[str, Callable[[dict[str, Any], Any], str]] = {
    "runtime_info": lambda c, p: _put(c["message_hub"]["runtime_info"], "foo", p, "message_hub.runtime_info.foo"),
    "hook_state": lambda c, p: _put(c["hook_states"], "CountingHook", p, "hook_states.CountingHook"),
    "inside_ema": lambda c, p: _put(c["hook_states"]["EMAHook"]["fields"], "ema", p, "hook_states.EMAHook.ema"),
    "rng": lambda c, p: _put(c, "rng", p, "rng"),
    "data_position": lambda c, p: _put(c, "data_position", p, "data_position"),
}


def _put(container: dict[str, Any], key: str, payload: Any, where: str) -> str:
    container[key] = payload
    return where


def crafted(honest: dict[str, Any], tmp_path: Path, location: str = "runtime_info", which: int = 0, checksum: bool = True) -> tuple[Path, str, str]:
    """``(file, tag, key path)``: the honest checkpoint with a payload planted at ``location``."""
    checkpoint = copy.deepcopy(honest)
    payload = payloads(tmp_path / "pwned")[which]
    where = LOCATIONS[location](checkpoint, payload)
    path = tmp_path / "crafted" / "epoch_1.pth"
    path.parent.mkdir(exist_ok=True)
    if checksum:  # an attacker can stamp a valid digest
        save_checkpoint(checkpoint, str(path))
    else:
        checkpoint["meta"].pop("checksum")
        torch.save(checkpoint, path)
    return path, str(payload.get("__enum__") or payload["__record__"]), where


def assert_refused(caught: pytest.ExceptionInfo[UntrustedCheckpointError], tmp_path: Path, path: Path, tag: str, where: str) -> None:
    assert not (tmp_path / "pwned").exists()
    assert (caught.value.tag, caught.value.where, caught.value.source) == (tag, where, str(path))
    assert f"refused {tag!r} at {where} of checkpoint {str(path)!r}" in str(caught.value)


@pytest.mark.parametrize("checksum", [True, False], ids=["checksummed", "no-checksum"])
@pytest.mark.parametrize("which", [0, 1, 2], ids=["os.system", "Popen", "eval"])
@pytest.mark.parametrize("location", list(LOCATIONS))
def test_resume_refuses_a_crafted_checkpoint(honest: dict[str, Any], tmp_path: Path, location: str, which: int, checksum: bool) -> None:
    path, tag, where = crafted(honest, tmp_path, location, which, checksum)
    runner = Runner(**_kwargs(tmp_path / "run", resume=True, load_from=str(path)))
    with pytest.raises(UntrustedCheckpointError) as caught:
        runner.train()
    assert_refused(caught, tmp_path, path, tag, where)
    assert runner.iter == 0 and not list((tmp_path / "run").glob("*.pth"))


READERS: dict[str, Callable[[Path, Path], Any]] = {
    "auto-resume": lambda path, tmp: (
        write_last_checkpoint(str(path.parent), str(path)),
        Runner(**_kwargs(path.parent, resume=True)).train(),
    ),
    "auto-resume-by-scan": lambda path, tmp: Runner(**_kwargs(path.parent, resume=True)).train(),
    "load_from": lambda path, tmp: Runner(**_kwargs(tmp / "run", load_from=str(path))).train(),
    "Runner.load_checkpoint": lambda path, tmp: Runner(**_kwargs(tmp / "run")).load_checkpoint(str(path)),
    "Runner.resume": lambda path, tmp: Runner(**_kwargs(tmp / "run")).resume(str(path)),
    "runner.load_checkpoint": lambda path, tmp: load_checkpoint(ToyModel(), str(path)),
    "pretrained": lambda path, tmp: read_state_dict(path),
    "MessageHub": lambda path, tmp: MessageHub.get_instance("crafted").load_state_dict(read_checkpoint(str(path))["message_hub"]),
    "TrainState.load": lambda path, tmp: TrainState.load(path),
}


@pytest.mark.parametrize("reader", list(READERS))
def test_every_reader_refuses_a_crafted_checkpoint(honest: dict[str, Any], tmp_path: Path, reader: str) -> None:
    path, tag, where = crafted(honest, tmp_path, "runtime_info", 0)
    if reader == "TrainState.load":  # a TrainState file: the payload in a hook's state
        data = TrainState({"w": torch.ones(1)}, {}, None, hook_states={"CountingHook": CountState(3, 0.5)}).to_dict()
        data["hook_states"]["CountingHook"] = payloads(tmp_path / "pwned")[0]
        torch.save(data, path)
        where = "hook_states.CountingHook"
    with pytest.raises(UntrustedCheckpointError) as caught:
        READERS[reader](path, tmp_path)
    assert_refused(caught, tmp_path, path, tag, where)


def test_train_state_from_dict_refuses_a_crafted_dict(tmp_path: Path) -> None:
    data = TrainState({"w": torch.ones(1)}, {}, None).to_dict()
    data["rng"] = payloads(tmp_path / "pwned")[1]
    with pytest.raises(UntrustedCheckpointError, match=r"refused 'subprocess:Popen' at rng: no record is registered"):
        TrainState.from_dict(data)
    assert not (tmp_path / "pwned").exists()


def test_a_message_hub_handed_raw_data_keeps_the_tags_as_inert_data(honest: dict[str, Any], tmp_path: Path) -> None:
    """``MessageHub.load_state_dict`` takes decoded objects, as MMEngine's does: it resolves nothing."""
    path, _, _ = crafted(honest, tmp_path)
    raw = torch.load(path, weights_only=True)
    hub = MessageHub.get_instance("raw")
    hub.load_state_dict(raw["message_hub"])
    assert hub.get_info("foo") == payloads(tmp_path / "pwned")[0] and not (tmp_path / "pwned").exists()


def test_the_command_line_test_refuses_a_crafted_checkpoint(honest: dict[str, Any], tmp_path: Path) -> None:
    path, tag, where = crafted(honest, tmp_path, "hook_state", 2)
    digits = Path(__file__).resolve().parents[2] / "examples" / "configs" / "digits.py"
    env = {**os.environ, "PYTHONPATH": str(Path(fengine.__file__).resolve().parents[1])}
    done = subprocess.run(
        [sys.executable, "-m", "fengine", "test", str(digits), "--work-dir", str(tmp_path / "cli"), "--checkpoint", str(path)],
        capture_output=True, text=True, env=env, timeout=300, check=False,
    )
    assert done.returncode != 0 and not (tmp_path / "pwned").exists()
    assert f"UntrustedCheckpointError: refused {tag!r} at {where} of checkpoint {str(path)!r}" in done.stderr


# -- honest checkpoints still round-trip exactly --------------------------------------------------


def test_every_built_in_hook_state_and_a_users_record_resume_exactly(honest: dict[str, Any], tmp_path: Path) -> None:
    # Resumed in the run's own work_dir: its checkpoint paths lie inside it and are kept.
    work_dir = Path(honest["hook_states"]["CheckpointHook"]["fields"]["last_ckpt"]).parent
    save_checkpoint(copy.deepcopy(honest), str(tmp_path / "epoch_1.pth"))
    stored = read_checkpoint(str(tmp_path / "epoch_1.pth"))
    runner = Runner(**_kwargs(work_dir))
    runner.resume(str(tmp_path / "epoch_1.pth"))
    states = runner.hook_states()
    stateful = {n for n, s in stored["hook_states"].items() if s is not None}
    assert {n for n, s in states.items() if s is not None} == stateful >= {"CheckpointHook", "EMAHook", "CountingHook", "IterTimerHook", "RuntimeInfoHook"}
    assert stored["hook_states"]["CountingHook"] == CountState(4, stored["hook_states"]["CountingHook"].last_loss)
    for name, state in stored["hook_states"].items():
        assert canonical(states[name]) == canonical(state)
        assert type(states[name]) is type(state)
        assert canonical(through_checkpoint(state)) == canonical(state)


@settings(max_examples=20)
@given(train_states())
def test_train_states_survive_their_file_bit_exactly(state: TrainState[Any]) -> None:
    buffer = io.BytesIO()
    torch.save(state.to_dict(), buffer)
    buffer.seek(0)
    restored = TrainState.from_dict(plain.load(buffer, decode=False))
    assert canonical(restored) == canonical(state)


def test_an_unregistered_hook_state_fails_the_contract_with_the_fix() -> None:
    def count(run: Any, own: Any, info: Any) -> tuple[Any, Any]:
        return run, SideEffectRecord(1)

    hook = FnHook(name="Unregistered", priority="NORMAL", init=None, on={Event.AFTER_TRAIN_ITER: count})
    with pytest.raises(ContractError, match=r"(?s)checkpoint-round-trip.*decorate the class with @fengine\.core\.plain\.register\('yourpackage\.SideEffectRecord'\)"):
        check_hook(hook, max_examples=5)
    check_hook(CountingHook(), max_examples=5)


# -- audit: one module reads checkpoint files ------------------------------------------------------

DECODER = Path(plain.__file__)
PRIVATE = {"_BY_TAG", "_BY_CLASS", "_Decoder", "_mmengine_types", "_tag_of"}


def _offences(path: Path) -> Iterator[str]:
    tree = ast.parse(path.read_text())
    for node in ast.walk(tree):
        if isinstance(node, ast.Attribute):
            dotted = ast.unparse(node)
            if node.attr in PRIVATE or dotted in ("torch.load", "torch.serialization.load", "pickle.load", "pickle.loads"):
                yield f"{node.lineno}: {dotted}"
        elif isinstance(node, ast.ImportFrom) and node.module in ("torch", "torch.serialization", "pickle", "fengine.core.plain"):
            for alias in node.names:
                if alias.name in ("load", "loads", "Unpickler", *PRIVATE):
                    yield f"{node.lineno}: from {node.module} import {alias.name}"
        elif isinstance(node, ast.keyword) and node.arg == "weights_only" and not (isinstance(node.value, ast.Constant) and node.value.value is True):
            yield f"{node.lineno}: weights_only={ast.unparse(node.value)}"


def test_only_the_decoder_reads_checkpoint_files() -> None:
    """Audit: ``torch.load``, unpickling and the decoder's internals appear in fengine.core.plain alone."""
    root = Path(fengine.__file__).parent
    offenders = [
        f"{path.relative_to(root)}:{offence}"
        for path in sorted(root.rglob("*.py"))
        if path != DECODER
        for offence in _offences(path)
    ]
    assert offenders == []
    assert any("torch.load" in o for o in _offences(DECODER))  # the audit sees the one that exists
