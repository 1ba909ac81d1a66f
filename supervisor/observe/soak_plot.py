"""The soak verdict as a picture a person reads (matplotlib; soak_render.plot writes it).

    memory   each process that moved: its RSS change since the end of its warm-up (MB), the
             fitted steady-state slope dashed over it, the growth budget as a band from 0 to
             +budget; each labelled at its right end with its figures and PASS / FAIL.
             A process whose RSS never moved more than FLAT_SPREAD_KB is one line of text
             ("workers (2): flat, 41.2 MB ± 0.1 · PASS"), not a line drawn on a ±0.04 KB axis
    buffers  the *_bytes levels' growth since the warm-up (KB) against their limit line
    levels   the counts that moved (not judged), only when there are any; key right of the axes
    title    the verdict and why: the failed checks' details, or what passed

Nothing is drawn over the data but the data: labels and keys sit right of the axes.
"""

from __future__ import annotations

import textwrap
from typing import TYPE_CHECKING, Any

from matplotlib.colors import to_hex
from matplotlib.patheffects import withStroke

from supervisor.observe.soak import (
    ProcessStats,
    Report,
    Thresholds,
    _figure,
    _memory_problem,
    _rss_lines,
    _series,
    is_counter,
    least_squares_slope,
)
from supervisor.observe.soak_render import _hms, seconds, time_unit

if TYPE_CHECKING:
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure

FLAT_SPREAD_KB = 256.0  # an RSS that never moved more than this is said, not drawn
FLAT_BUFFER_KB = 1.0  # likewise a buffer level
MAX_LEVEL_LINES = 8  # levels drawn; more would be an unreadable key
Points = list[tuple[float, float]]
RIGHT = (1.01, 0.0)  # just right of the axes, in axes coordinates


class _Time:
    """Seconds since the first sample, in the unit that fits the run."""

    def __init__(self, records: list[dict[str, Any]]) -> None:
        self.start = records[0]["ts"] if records else 0.0
        self.span_s = records[-1]["ts"] - self.start if records else 0.0
        self.unit, self.per = time_unit(self.span_s)

    def x(self, ts: float) -> float:
        return (ts - self.start) / self.per


def draw(records: list[dict[str, Any]], report: Report) -> Figure:
    """The figure (not saved): memory, buffers, and the levels that moved."""
    import matplotlib.pyplot as plt

    when = _Time(records)
    levels = _moving_levels(records)
    rows = 3 if levels else 2
    fig, axes = plt.subplots(rows, 1, sharex=True, figsize=(13, 3.8 * rows), squeeze=False)
    memory, buffers = axes[0][0], axes[1][0]
    _memory(memory, records, report, when)
    _buffers(buffers, records, report, when)
    if levels:
        _levels(axes[2][0], levels, when)
    warmup = report.thresholds.warmup_s
    for row in axes:
        row[0].axvspan(0, warmup / when.per, color="grey", alpha=0.12, linewidth=0)
        row[0].grid(alpha=0.3)
    axes[-1][0].set_xlabel(
        f"{when.unit} since the first sample (grey: the warm-up, {seconds(warmup)}, not judged)"
    )
    fig.suptitle(_title(report, when.span_s, len(records)), fontsize="large", x=0.02, ha="left")
    fig.subplots_adjust(left=0.07, right=0.68, top=0.86, hspace=0.35)
    return fig


def _title(report: Report, span_s: float, samples: int) -> str:
    head = f"soak over {_hms(span_s)}, {samples} samples: {report.verdict}"
    if report.verdict == "FAIL":
        why = "; ".join(c.detail for c in report.checks if c.status == "FAIL")
    elif report.verdict == "INCOMPLETE":
        why = f"not whole: {report.incomplete}"
    else:
        why = "; ".join(f"{c.name}: {c.detail}" for c in report.checks if c.status == "PASS")
    return head + "\n" + textwrap.fill(why, 120)


def _memory(ax: Axes, records: list[dict[str, Any]], report: Report, when: _Time) -> None:
    t = report.thresholds
    stats = {(p.name, p.pid): p for p in report.processes}
    budget_mb = t.max_rss_growth_kb / 1024
    ax.axhspan(0, budget_mb, color="tab:green", alpha=0.07, linewidth=0)
    ax.axhline(budget_mb, color="tab:red", linestyle=":", linewidth=1)
    ax.annotate(
        f"growth budget {_figure(t.max_rss_growth_kb)} KB",
        xy=(0, budget_mb),
        xycoords=("axes fraction", "data"),
        xytext=(4, 3),
        textcoords="offset points",
        fontsize="small",
        color="tab:red",
    )
    flat: list[tuple[str, Points, ProcessStats | None]] = []
    moving = []
    for (name, pid), points in _rss_lines(records).items():
        values = [v for _, v in points]
        if max(values) - min(values) <= FLAT_SPREAD_KB:
            flat.append((name, points, stats.get((name, pid))))
        else:
            moving.append((points, stats.get((name, pid))))
    for slot, (points, p) in enumerate(moving):
        _process_line(ax, points, p, t, when, _slot(slot, len(moving)))
    ax.set_ylabel("RSS change after warm-up (MB)")
    low, high = ax.get_ylim()
    ax.set_ylim(min(low, -0.1 * budget_mb), max(high, 1.25 * budget_mb))
    ax.set_title("memory (dashed: least-squares slope after warm-up)", loc="left")
    if flat:
        ax.text(*RIGHT, _flat_text(flat, t), transform=ax.transAxes, va="bottom", fontsize="small")


def _slot(index: int, count: int) -> float:
    """Where the index-th label right of the axes starts (axes fraction, top down): one
    label under the other, never on top of each other where lines end close together."""
    return 1.0 - index * min(0.2, 0.7 / max(count, 1))


def _label(ax: Axes, text: str, end: tuple[float, float], y: float, color: str) -> None:
    """``text`` right of the axes at height ``y``, a thin line to the series' last point."""
    ax.annotate(
        text,
        xy=end,
        xytext=(1.02, y),
        textcoords="axes fraction",
        color=color,
        fontsize="small",
        va="top",
        annotation_clip=False,
        arrowprops={"arrowstyle": "-", "color": color, "linewidth": 0.6, "alpha": 0.6},
    )


def _process_line(
    ax: Axes, points: Points, p: ProcessStats | None, t: Thresholds, when: _Time, y: float
) -> None:
    """One process's RSS change since its warm-up, its fitted slope, its label at the end."""
    steady = [(ts, v) for ts, v in points if ts - points[0][0] >= t.warmup_s] or points
    ends = min(3, len(steady))
    base = sum(v for _, v in steady[:ends]) / ends  # as soak._growth measures from
    xs = [when.x(ts) for ts, _ in points]
    ys = [(v - base) / 1024 for _, v in points]
    (line,) = ax.plot(xs, ys, linewidth=1)
    slope = least_squares_slope(steady)
    if p is not None and p.slope_kb_per_h is not None and slope is not None:
        mean_x = sum(ts for ts, _ in steady) / len(steady)
        mean_y = sum(v for _, v in steady) / len(steady)
        ends_ts = (steady[0][0], steady[-1][0])
        fit = [(mean_y + slope * (ts - mean_x) - base) / 1024 for ts in ends_ts]
        ax.plot(
            [when.x(ts) for ts in ends_ts],
            fit,
            "--",
            color=line.get_color(),
            linewidth=2.2,
            path_effects=[withStroke(linewidth=4, foreground="white")],  # seen over its noise
        )
    _label(ax, _process_label(p, t, points), (xs[-1], ys[-1]), y, to_hex(line.get_color()))


def _process_label(p: ProcessStats | None, t: Thresholds, points: Points) -> str:
    name = f"{p.name} (pid {p.pid})" if p is not None else "process"
    level = f"{points[0][1] / 1024:.1f} → {points[-1][1] / 1024:.1f} MB"
    if p is None or p.slope_kb_per_h is None or p.growth_kb is None:
        return f"{name} {level}\nnot judged: too short after warm-up"
    status = "FAIL" if _memory_problem(p, t) else "PASS"
    return (
        f"{name} {status}, {level}\n"
        f"slope {p.slope_kb_per_h:+.0f} KB/h (limit {_figure(t.max_rss_slope_kb_per_h)}), "
        f"grew {p.growth_kb:+.0f} KB (budget {_figure(t.max_rss_growth_kb)})"
    )


def _flat_text(flat: list[tuple[str, Points, ProcessStats | None]], t: Thresholds) -> str:
    """One line per role: the processes whose RSS stayed within FLAT_SPREAD_KB."""
    groups: dict[str, list[tuple[str, Points, ProcessStats | None]]] = {}
    for item in flat:
        groups.setdefault("workers" if item[0].startswith("worker") else item[0], []).append(item)
    lines = []
    for role, items in groups.items():
        values = [v for _, points, _ in items for _, v in points]
        mean_mb = sum(values) / len(values) / 1024
        half_kb = (max(values) - min(values)) / 2
        spread = f"{half_kb / 1024:.1f}" if half_kb >= 100 else f"{half_kb:.0f} KB"
        judged = [p for _, _, p in items if p is not None and p.slope_kb_per_h is not None]
        status = "not judged"
        if judged:
            status = "FAIL" if any(_memory_problem(p, t) for p in judged) else "PASS"
        if role == "workers" and len(items) > 1:
            who = f"workers ({len(items)})"
        else:
            who = ", ".join(f"{n} (pid {p.pid})" if p else n for n, _, p in items)
        lines.append(f"{who}: flat, {mean_mb:.1f} MB ± {spread} · {status}")
    return "\n".join(lines)


def _buffers(ax: Axes, records: list[dict[str, Any]], report: Report, when: _Time) -> None:
    t = report.thresholds
    start_ts = when.start + t.warmup_s
    ax.axhline(t.max_buffer_growth_kb, color="tab:red", linestyle=":", linewidth=1)
    ax.annotate(
        f"buffer growth limit {_figure(t.max_buffer_growth_kb)} KB",
        xy=(0, t.max_buffer_growth_kb),
        xycoords=("axes fraction", "data"),
        xytext=(4, 3),
        textcoords="offset points",
        fontsize="small",
        color="tab:red",
    )
    said = []
    judged = [
        (name, points)
        for name, points in sorted(_series(records, "buffers").items())
        if name.endswith("_bytes") and not is_counter(name)
    ]
    for slot, (name, points) in enumerate(judged):
        steady = [(ts, v / 1024) for ts, v in points if ts >= start_ts] or [
            (ts, v / 1024) for ts, v in points
        ]
        values = [v for _, v in points]
        if (max(values) - min(values)) / 1024 <= FLAT_BUFFER_KB:
            said.append(f"{name}: flat, {values[-1] / 1024:.1f} KB")
            continue
        growth = steady[-1][1] - steady[0][1]
        status = "FAIL" if growth > t.max_buffer_growth_kb else "PASS"
        xs = [when.x(ts) for ts, _ in points]
        ys = [v / 1024 - steady[0][1] for _, v in points]
        (line,) = ax.plot(xs, ys, linewidth=1)
        text = f"{name} {status}, grew {growth:+.1f} KB"
        _label(ax, text, (xs[-1], ys[-1]), _slot(slot, len(judged)), to_hex(line.get_color()))
    said += [f"{c.name}: {c.status} ({c.detail})" for c in report.checks if c.name != "memory"]
    text = "\n".join(textwrap.fill(line, 48) for line in said)
    ax.text(*RIGHT, text, transform=ax.transAxes, va="bottom", fontsize="small")
    low, high = ax.get_ylim()
    ax.set_ylim(min(low, -0.1 * t.max_buffer_growth_kb), max(high, 1.25 * t.max_buffer_growth_kb))
    ax.set_ylabel("buffer growth after warm-up (KB)")
    ax.set_title("buffers (the *_bytes levels, judged)", loc="left")


def _moving_levels(records: list[dict[str, Any]]) -> list[tuple[str, Points]]:
    return [
        (name, points)
        for name, points in sorted(_series(records, "buffers").items())
        if not is_counter(name)
        and not name.endswith("_bytes")
        and len({v for _, v in points}) > 1  # a level that never moved says nothing here
    ]


def _levels(ax: Axes, levels: list[tuple[str, Points]], when: _Time) -> None:
    for name, points in levels[:MAX_LEVEL_LINES]:
        ax.plot([when.x(ts) for ts, _ in points], [v for _, v in points], label=name)
    more = len(levels) - MAX_LEVEL_LINES
    ax.legend(
        loc="upper left",
        bbox_to_anchor=(1.01, 1.0),  # right of the axes: never over the data
        borderaxespad=0,
        fontsize="small",
        title=f"levels (+{more} not drawn)" if more > 0 else "levels",
    )
    ax.set_ylabel("count")
    ax.set_title("levels that moved (not judged)", loc="left")
