"""The soak plot a person reads (supervisor/observe/soak_plot.py): asserted on what it draws
(matplotlib's objects), not on pixels: the verdict's figures in its texts, the key right of
the axes, flat series said in words instead of drawn, the title saying why."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import numpy as np
import pytest

matplotlib = pytest.importorskip("matplotlib")
matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402
from matplotlib.lines import Line2D  # noqa: E402

from supervisor.observe.soak import Thresholds, analyse  # noqa: E402
from supervisor.observe.soak_plot import draw  # noqa: E402
from supervisor.observe.soak_render import format_report, plot, seconds  # noqa: E402


def _xy(line: Line2D) -> tuple[list[float], list[float]]:
    """A line's points as floats (matplotlib types them as any array-like)."""
    xs = np.asarray(line.get_xdata(), dtype=float)
    ys = np.asarray(line.get_ydata(), dtype=float)
    return [float(x) for x in xs], [float(y) for y in ys]


START_TS = 1_767_886_200.0  # a fixed instant: nothing here reads the clock
STEP_S = 30.0


def soak(hours: float = 2.0, leak_kb_per_h: float = 3000.0) -> list[dict[str, Any]]:
    """A flat supervisor (41.2 MB, +-20 KB), two flat workers and one leaking worker."""
    records = []
    for i in range(int(hours * 3600 / STEP_S) + 1):
        t = i * STEP_S
        wobble = 20.0 if i % 2 else -20.0
        records.append(
            {
                "ts": START_TS + t,
                "mono": 500.0 + t,
                "processes": {
                    "supervisor": {"pid": 100, "rss_kb": 42_189.0 + wobble},
                    "worker-1": {"pid": 101, "rss_kb": 30_000.0 - wobble},
                    "worker-2": {"pid": 102, "rss_kb": 30_000.0 + wobble},
                    "worker-3": {"pid": 103, "rss_kb": 30_000.0 + leak_kb_per_h * t / 3600},
                },
                "buffers": {
                    "recv_buffer_bytes": 4096.0,
                    "live_tickers": 0,
                    "pending_requests": i % 3,
                },
            }
        )
    return records


def _texts(fig: Figure) -> list[str]:
    return [t.get_text() for t in fig.findobj(matplotlib.text.Text) if t.get_text()]


def _drawn(records: list[dict[str, Any]]) -> tuple[Figure, list[str]]:
    report = analyse(records, Thresholds())
    fig = draw(records, report)
    fig.canvas.draw()  # lays out the texts and the key, as savefig would
    return fig, _texts(fig)


def test_the_verdict_is_drawn_where_it_is_judged() -> None:
    records = soak()
    report = analyse(records, Thresholds())
    assert report.verdict == "FAIL" and report.failed_checks == ["memory"]
    fig, texts = _drawn(records)
    try:
        joined = "\n".join(texts)
        leaker = next(p for p in report.processes if p.name == "worker-3")
        assert leaker.slope_kb_per_h is not None and leaker.growth_kb is not None
        # the title says why it failed, with the check's own figures
        title = fig.get_suptitle()
        assert "FAIL" in title and "worker-3 (pid 103) RSS grows 3000 KB/h > 1024 KB/h" in title
        # the leaking worker's label: its slope, its growth, both limits, its status
        assert f"slope {leaker.slope_kb_per_h:+.0f} KB/h (limit 1024)" in joined
        assert f"grew {leaker.growth_kb:+.0f} KB (budget 16384)" in joined
        assert re.search(r"worker-3 \(pid 103\) FAIL", joined)
        assert "growth budget 16384 KB" in joined  # the band's own label
        assert "buffer growth limit 50 KB" in joined
        memory = fig.axes[0]
        budget_mb = 16_384 / 1024
        assert any(  # the budget line at +16 MB on the memory axes
            _xy(line)[1] == [budget_mb, budget_mb] for line in memory.lines
        )
        fitted = [line for line in memory.lines if line.get_linestyle() == "--"]
        assert len(fitted) == 1  # the leaker's fitted slope, over its steady state only
        xs, ys = _xy(fitted[0])
        assert xs[0] == pytest.approx(300 / 60)  # minutes: from the end of the warm-up
        rise_mb = (ys[1] - ys[0]) * 1024
        assert rise_mb / ((xs[1] - xs[0]) / 60) == pytest.approx(leaker.slope_kb_per_h)
    finally:
        plt.close(fig)


def test_flat_series_are_said_not_drawn_and_the_key_is_outside() -> None:
    fig, texts = _drawn(soak())
    try:
        memory = fig.axes[0]
        drawn = [line for line in memory.lines if len(_xy(line)[0]) > 2]
        assert len(drawn) == 1  # only worker-3: the flat processes are not lines
        joined = "\n".join(texts)
        assert "supervisor (pid 100): flat, 41.2 MB ± 20 KB · PASS" in joined
        assert "workers (2): flat, 29.3 MB ± 20 KB · PASS" in joined
        assert "recv_buffer_bytes: flat, 4.0 KB" in joined
        assert memory.get_ylim()[1] >= 16  # never a ±0.04 KB axis around a flat zero
        renderer = fig.canvas.get_renderer()  # type: ignore[attr-defined]
        legends = [ax.get_legend() for ax in fig.axes if ax.get_legend() is not None]
        assert legends, "the levels that moved have a key"
        for ax in fig.axes:
            legend = ax.get_legend()
            if legend is not None:  # right of its axes: never over the data
                box = legend.get_window_extent(renderer)
                assert box.x0 >= ax.get_window_extent(renderer).x1
    finally:
        plt.close(fig)


def test_a_pass_says_what_passed_and_the_png_is_written(tmp_path: Path) -> None:
    records = soak(leak_kb_per_h=0.0)
    report = analyse(records, Thresholds())
    assert report.verdict == "PASS"
    fig = draw(records, report)
    try:
        title = fig.get_suptitle()
        assert title.startswith("soak over 2h00m00s, 241 samples: PASS")
        assert "memory: 4 process(es) within 1024 KB/h and 16384 KB" in title
        assert not [line for line in fig.axes[0].lines if len(_xy(line)[0]) > 2]
    finally:
        plt.close(fig)
    out = tmp_path / "soak.png"
    plot(records, out, report)
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_the_report_rounds_the_warmup() -> None:
    assert [seconds(v) for v in (0.166141, 4.25, 300.0)] == ["0.17 s", "4.2 s", "300 s"]
    records = soak(hours=0.01)
    text = format_report(analyse(records, Thresholds(warmup_s=0.166141)))
    assert "warm-up 0.17 s excluded" in text
