"""MMLogger and print_log: formats, files, rank awareness, duplicate warnings."""

from __future__ import annotations

import logging
import re
import time
import uuid

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import fengine.logging.logger as logger_module
from fengine.logging import MMLogger, print_log


@pytest.fixture
def make_logger():
    created: list[MMLogger] = []

    def make(**kwargs):
        logger = MMLogger.get_instance(f"log-{uuid.uuid4().hex}", **kwargs)
        created.append(logger)
        return logger

    yield make
    for logger in created:
        for handler in logger.handlers:
            handler.close()


def test_console_and_file_lines(make_logger, tmp_path, capsys):
    log_file = tmp_path / "run" / "20240101_000000.log"
    logger = make_logger(logger_name="fengine", log_file=str(log_file))
    logger.info("Epoch(train) [1][3/4]  lr: 1.0000e-01")
    logger.warning("careful")
    logger.debug("hidden")
    lines = log_file.read_text().splitlines()
    assert re.fullmatch(
        r"\d{4}/\d\d/\d\d \d\d:\d\d:\d\d - fengine - INFO - Epoch\(train\) \[1\]\[3/4\]  lr: 1\.0000e-01",
        lines[0],
    )
    assert lines[1].endswith(" - fengine - WARNING - careful")
    assert len(lines) == 2
    out = capsys.readouterr().out.splitlines()
    assert re.fullmatch(r"\d\d/\d\d \d\d:\d\d:\d\d - fengine - INFO - Epoch.*", out[0])
    assert logger.log_file == str(log_file)


def test_error_lines_name_the_location(make_logger, tmp_path):
    log_file = tmp_path / "e.log"
    logger = make_logger(log_file=str(log_file))
    logger.error("boom")
    assert re.search(
        r"ERROR - .*test_logger\.py - test_error_lines_name_the_location - \d+ - boom",
        log_file.read_text(),
    )


def test_repeated_warnings_are_shown_once(make_logger, tmp_path):
    log_file = tmp_path / "w.log"
    logger = make_logger(log_file=str(log_file))
    for _ in range(3):
        logger.warning("same")
    logger.info("x")
    logger.info("x")
    text = log_file.read_text()
    assert text.count("same") == 1 and text.count(" - x") == 2


def test_other_ranks_show_only_errors_and_write_no_file(make_logger, tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(logger_module, "get_rank", lambda: 1)
    monkeypatch.setattr(logger_module, "get_world_size", lambda: 2)
    log_file = tmp_path / "r.log"
    logger = make_logger(log_file=str(log_file))
    logger.info("quiet")
    logger.error("loud")
    assert not log_file.exists()
    out = capsys.readouterr().out
    assert "quiet" not in out and "loud" in out


def test_distributed_logs_one_file_per_rank(make_logger, tmp_path, monkeypatch):
    monkeypatch.setattr(logger_module, "get_rank", lambda: 1)
    monkeypatch.setattr(logger_module, "get_world_size", lambda: 2)
    logger = make_logger(log_file=str(tmp_path / "run.log"), distributed=True)
    logger.info("from rank one")
    (written,) = list(tmp_path.iterdir())
    assert re.fullmatch(r"run_.+_device\d+_rank1\.log", written.name)
    assert str(written) == logger.log_file
    assert "from rank one" in written.read_text()


def test_log_level_and_set_level(make_logger, tmp_path):
    log_file = tmp_path / "l.log"
    logger = make_logger(log_file=str(log_file), log_level="WARNING")
    logger.info("dropped")
    logger.warning("kept")
    logger.setLevel(logging.ERROR)
    logger.warning("also dropped")
    assert log_file.read_text().count("kept") == 1
    assert "dropped" not in log_file.read_text()
    with pytest.raises(ValueError, match="log_level"):
        MMLogger("bad", log_level="LOUD")
    with pytest.raises(ValueError, match="file_mode"):
        MMLogger("bad", file_mode="x")


def test_file_mode_append_keeps_earlier_lines(tmp_path):
    log_file = tmp_path / "a.log"
    log_file.write_text("earlier\n")
    logger = MMLogger(f"log-{uuid.uuid4().hex}", log_file=str(log_file), file_mode="a")
    logger.info("later")
    for handler in logger.handlers:
        handler.close()
    assert log_file.read_text().startswith("earlier\n") and "later" in log_file.read_text()


def test_print_log_routes(make_logger, tmp_path, capsys):
    print_log("plain")
    assert capsys.readouterr().out == "plain\n"
    log_file = tmp_path / "p.log"
    logger = make_logger(log_file=str(log_file))
    print_log("by object", logger=logger)
    print_log("by name", logger=logger.instance_name)
    print_log("current", logger="current", level=logging.WARNING)
    print_log("nothing", logger="silent")
    text = log_file.read_text()
    assert "by object" in text and "by name" in text and "WARNING - current" in text
    assert "nothing" not in text
    with pytest.raises(ValueError, match="no MMLogger named 'nobody'"):
        print_log("x", logger="nobody")
    with pytest.raises(TypeError, match="logger"):
        print_log("x", logger=3)  # type: ignore[arg-type]


def test_get_current_instance_is_the_latest(make_logger):
    logger = make_logger()
    assert MMLogger.get_current_instance() is logger
    assert isinstance(logger, logging.Logger)


@settings(max_examples=40, deadline=None)
@given(
    st.lists(st.floats(0, 4e9), min_size=1, max_size=8).map(
        lambda starts: [t + d for t in starts for d in (0.0, 0.25, 0.999, 1.0)]
    ),
    st.sampled_from(["%m/%d %H:%M:%S", "%Y/%m/%d %H:%M:%S", None]),
)
def test_level_formatter_times_equal_logging_formatter_times(times, datefmt):
    """Remembering the formatted second gives the text logging's own formatter gives."""
    ours = logger_module.LevelFormatter(datefmt=datefmt)
    reference = logging.Formatter("%(asctime)s - %(name)s - %(levelname)s - %(message)s", datefmt)
    for created in times:
        record = logging.LogRecord("fengine", logging.INFO, __file__, 1, "m %d", (7,), None)
        record.created, record.msecs = created, created % 1 * 1000
        assert ours.format(record) == reference.format(record)


def test_level_formatter_follows_a_changed_converter(monkeypatch):
    formatter = logger_module.LevelFormatter(datefmt="%H:%M:%S %Z")
    record = logging.LogRecord("fengine", logging.INFO, __file__, 1, "m", None, None)
    record.created = 1_700_000_000.5
    local = formatter.formatTime(record, formatter.datefmt)
    monkeypatch.setattr(logging.Formatter, "converter", time.gmtime)
    assert formatter.formatTime(record, formatter.datefmt) == time.strftime(
        "%H:%M:%S %Z", time.gmtime(record.created)
    )
    monkeypatch.undo()
    assert formatter.formatTime(record, formatter.datefmt) == local
