"""The progress bar for long runs (supervisor/observe/progress.py): one line redrawn on a
terminal, each cycle line still in the log; elsewhere the lines as before."""

from __future__ import annotations

import io
import logging

import pytest

from supervisor.observe.progress import ProgressBar, bar_text, cycle_echo

pytestmark = pytest.mark.timeout(30)


class Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_the_bar_fills_with_the_planned_share_and_fits_the_width() -> None:
    text = bar_text("phase3", 800, 0.4, 720.0, 60)
    assert text == "phase3 [#########--------------]  40% 800 cycles, ETA 12 min"
    assert len(bar_text("phase3", 800, 0.4, 720.0, 60)) <= 60
    assert bar_text("phase2", 3, None, None, 60) == "phase2 3 cycles"


def test_on_a_terminal_cycles_draw_a_bar_and_go_to_the_log(caplog) -> None:
    ticks = iter([0.0, 10.0, 10.0, 20.0, 20.0])
    stream = Terminal()
    bar = ProgressBar("phase3", stream, cycles=4, now=lambda: next(ticks))
    with caplog.at_level(logging.INFO, logger="supervisor.observe.progress"):
        bar.echo("cycle 1: symbols ok 3/3")
        bar.echo("cycle 2: symbols ok 3/3")
    bar.close()
    drawn = stream.getvalue()
    assert "cycle 1" not in drawn  # the terminal gets the bar, not the lines
    assert drawn.count("\r") == 2 and drawn.endswith("\n")
    assert "25% 1 cycle, ETA 30 s" in drawn and "50% 2 cycles, ETA 20 s" in drawn
    assert [r.getMessage() for r in caplog.records] == [
        "cycle 1: symbols ok 3/3",
        "cycle 2: symbols ok 3/3",
    ]
    assert all(getattr(r, "event", "") == "cycle_line" for r in caplog.records)


def test_a_soak_by_time_fills_with_the_time_and_a_pipe_gets_the_lines() -> None:
    ticks = iter([0.0, 90.0, 90.0])
    bar = ProgressBar("phase3", Terminal(), seconds=360.0, now=lambda: next(ticks))
    bar.done = 7
    assert bar.fraction() == 0.25
    said: list[str] = []
    echo, none = cycle_echo("phase3", io.StringIO(), said.append, cycles=10)
    echo("cycle 1")
    assert none is None and said == ["cycle 1"]
