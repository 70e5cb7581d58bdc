"""User errors at the command line end in one message and status 2; --debug shows the traceback."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from fengine.config import Config, ConfigSyntaxError

DIGITS = str(Path(__file__).resolve().parents[2] / "examples" / "configs" / "digits.py")


def _fengine(*argv: str, cwd: Path, **env: str) -> subprocess.CompletedProcess[str]:
    inherited = {k: v for k, v in os.environ.items() if k != "FENGINE_DEBUG"}
    environment = {**inherited, "OMP_NUM_THREADS": "1", **env}
    return subprocess.run(
        [sys.executable, "-m", "fengine", *argv],
        cwd=cwd,
        env=environment,
        capture_output=True,
        text=True,
        timeout=300,  # catches a hang only: on a busy machine the imports alone take tens of seconds
        check=False,
    )


@pytest.fixture
def broken(tmp_path: Path) -> Path:
    path = tmp_path / "broken.py"
    path.write_text("model = dict(type='Net')\n    train_cfg = dict(max_epochs=2)\n")
    return path


def test_a_syntax_error_names_the_file_and_line_and_shows_the_line(broken: Path) -> None:
    with pytest.raises(ConfigSyntaxError) as raised:
        Config.fromfile(broken)
    assert str(raised.value) == (
        f"config file {broken}, line 2: unexpected indent\n"
        "    train_cfg = dict(max_epochs=2)\n"
        "    ^"
    )
    assert isinstance(raised.value, SyntaxError) and raised.value.lineno == 2


def test_a_syntax_error_at_the_command_line_is_one_message_with_status_2(
    broken: Path, tmp_path: Path
) -> None:
    unclosed = tmp_path / "unclosed.py"
    unclosed.write_text("model = dict(type='Net')\ntrain_cfg = dict(max_epochs=2\nx = 1\n")
    done = _fengine("train", str(unclosed), cwd=tmp_path)
    assert done.returncode == 2 and done.stdout == ""
    assert done.stderr == (
        f"fengine train: error: config file {unclosed}, line 2: '(' was never closed\n"
        "    train_cfg = dict(max_epochs=2\n"
        "                    ^\n"
    )


@pytest.mark.parametrize(
    ("option", "message"),
    [
        ("trian_cfg.max_epochs=1", "unknown top-level key 'trian_cfg'; did you mean 'train_cfg'"),
        ("train_cfg.max_epoch=1", "'train_cfg' has no key 'max_epoch'; did you mean 'max_epochs'?"),
    ],
)
def test_an_unknown_option_key_is_one_line_naming_the_closest_keys(option: str, message: str, tmp_path: Path) -> None:
    done = _fengine("train", DIGITS, "--cfg-options", option, cwd=tmp_path)
    assert done.returncode == 2 and "Traceback" not in done.stderr
    key = option.split("=")[0]
    assert done.stderr.startswith(f"fengine train: error: --cfg-options {key}=...: {message}")
    assert done.stderr.count("\n") == 1
    assert not (tmp_path / "work_dirs").exists()  # nothing was started


@pytest.mark.parametrize("how", ["--debug", "FENGINE_DEBUG=1"])
def test_debug_shows_the_traceback(how: str, broken: Path, tmp_path: Path) -> None:
    argv, env = (["--debug"], {}) if how == "--debug" else ([], {"FENGINE_DEBUG": "1"})
    done = _fengine("test", str(broken), *argv, cwd=tmp_path, **env)
    assert done.returncode == 1
    assert done.stderr.startswith("Traceback (most recent call last):")
    assert "IndentationError: unexpected indent" in done.stderr  # the original, chained
    assert done.stderr.rstrip().endswith("    ^")  # and the one message last
    assert "fengine.cli.commands.UsageError: config file" in done.stderr


def test_help_names_only_files_the_main_job_writes(tmp_path: Path) -> None:
    done = _fengine("--help", cwd=tmp_path)
    assert done.returncode == 0
    assert "epoch_15.pth" not in done.stdout
    assert "--checkpoint work_dirs/digits/best_accuracy_epoch_11.pth" in done.stdout
    assert "--debug (or FENGINE_DEBUG=1) shows the traceback" in done.stdout
