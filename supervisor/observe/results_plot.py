"""Results as pictures a trader reads (matplotlib, PNG; ``report --plot DIR`` writes them).

    equity.png            the equity curve (closed-trade equity, ending at the open
                          positions' last marks) with its drawdown from the running peak
                          beneath it, shaded; the run's figures in the title
    <day>-<SYMBOL>.png    a day of one underlying: its price as the cycles saw it, our
                          entries (^) and exits (v, green a gain, red a loss) on it, each
                          labelled with the option's price

Times are in the display zone (schedule.timezone). An entry or exit sits on the price line
at its moment (interpolated between the cycles' prices).
"""

from __future__ import annotations

import bisect
from collections.abc import Mapping, Sequence
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Protocol
from zoneinfo import ZoneInfo

if TYPE_CHECKING:
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure

MAX_LABELS = 24  # more labels than this on one day's chart would hide the price line
Points = Sequence[tuple[float, float]]  # (epoch seconds, value)


class Marker(Protocol):
    """An entry or exit as drawn (supervisor/journal/day_chart.py's ``Marker``)."""

    @property
    def symbol(self) -> str: ...
    @property
    def ts(self) -> float: ...
    @property
    def kind(self) -> str: ...
    @property
    def label(self) -> str: ...
    @property
    def pnl(self) -> float | None: ...


class DayChart(Protocol):
    """A day's prices and markers (supervisor/journal/day_chart.py's ``DayChart``)."""

    @property
    def day(self) -> str: ...
    @property
    def prices(self) -> Mapping[str, Points]: ...
    @property
    def markers(self) -> Sequence[Marker]: ...


def write_plots(
    out: Path,
    equity: Points,
    title: str,
    charts: Sequence[DayChart],
    tz: str = "UTC",
    *,
    equity_label: str = "equity",
    sessions: Sequence[tuple[str, float, float]] = (),
) -> list[Path]:
    """Write the equity curve (titled ``title``) and each chart's symbols into ``out`` (made
    if missing); the files written, in order."""
    import matplotlib

    matplotlib.use("Agg")  # files only: no display needed on a server
    import matplotlib.pyplot as plt

    out.mkdir(parents=True, exist_ok=True)
    zone = ZoneInfo(tz)
    figures = [(out / "equity.png", equity_figure(equity, title, zone, equity_label, sessions))]
    for chart in charts:
        for symbol in sorted({*chart.prices, *(m.symbol for m in chart.markers)}):
            figures.append((out / f"{chart.day}-{symbol}.png", day_figure(chart, symbol, zone)))
    written = []
    for path, fig in figures:
        try:
            fig.savefig(path, dpi=110, bbox_inches="tight")
        finally:
            plt.close(fig)
        written.append(path)
    return written


def equity_figure(
    points: Points,
    title: str,
    zone: ZoneInfo,
    label: str = "equity",
    sessions: Sequence[tuple[str, float, float]] = (),
) -> Figure:
    """Equity above, drawdown below, over the run's time: with several ``sessions`` (day,
    first cycle, last cycle) each day is one step of the axis, the nights left out."""
    import matplotlib.pyplot as plt

    fig, (top, bottom) = plt.subplots(
        2, 1, sharex=True, figsize=(12, 6), gridspec_kw={"height_ratios": [3, 1]}
    )
    days = len(sessions) > 1
    when = session_x([t for t, _ in points], sessions) if days else _x([t for t, _ in points], zone)
    equity = [e for _, e in points]
    peaks = [max(equity[: i + 1]) for i in range(len(equity))]
    drawdown = [e - p for e, p in zip(equity, peaks, strict=True)]
    top.step(when, equity, where="post", color="tab:blue", linewidth=1.4)
    top.set_ylabel(label)
    bottom.fill_between(when, drawdown, 0, step="post", color="tab:red", alpha=0.35, linewidth=0)
    bottom.step(when, drawdown, where="post", color="tab:red", linewidth=0.8)
    bottom.set_ylabel("drawdown")
    if days:  # a tick at each day's start, at most about a dozen labelled
        every = max(1, round(len(sessions) / 12))
        bottom.set_xticks([i for i in range(len(sessions)) if i % every == 0])
        bottom.set_xticklabels([d for i, (d, _, _) in enumerate(sessions) if i % every == 0])
        bottom.set_xlabel("trading days (each session one step, nights left out)")
    else:
        bottom.set_xlabel(f"time ({zone.key})")
        for ax in (top, bottom):
            ax.xaxis_date(zone)
    for ax in (top, bottom):
        ax.grid(alpha=0.3)
    fig.suptitle(title, x=0.02, ha="left", fontsize="medium")
    fig.autofmt_xdate()
    return fig


def session_x(ts: Sequence[float], sessions: Sequence[tuple[str, float, float]]) -> list[float]:
    """Each time as its day's place on a session axis: day i spans [i, i + 1), its first
    cycle at i; a time between sessions sits at the end of the one before."""
    starts = [first for _, first, _ in sessions]
    out = []
    for t in ts:
        i = max(0, bisect.bisect_right(starts, t) - 1)
        _, first, last = sessions[i]
        span = max(last - first, 1.0)
        out.append(i + min(max((t - first) / span, 0.0), 1.0) * 0.98)
    return out


def day_figure(chart: DayChart, symbol: str, zone: ZoneInfo) -> Figure:
    """One underlying's day: its price and our entries and exits on it."""
    import matplotlib.pyplot as plt
    from matplotlib.dates import DateFormatter

    fig, ax = plt.subplots(figsize=(12, 5))
    points = chart.prices.get(symbol, ())
    if points:
        ax.plot(
            _x([t for t, _ in points], zone),
            [p for _, p in points],
            color="0.3",
            linewidth=1.1,
            label=f"{symbol} (the price each cycle saw)",
        )
    markers = [m for m in chart.markers if m.symbol == symbol]
    for m in markers:
        _marker(ax, m, points, zone, label=len(markers) <= MAX_LABELS)
    ax.set_title(
        f"{symbol} {chart.day}: entries {sum(m.kind == 'entry' for m in markers)}, "
        f"exits {sum(m.kind == 'exit' for m in markers)}",
        loc="left",
    )
    ax.set_xlabel(f"time ({zone.key})")
    ax.xaxis_date(zone)
    ax.xaxis.set_major_formatter(DateFormatter("%H:%M", tz=zone))  # one day: the hour says it
    ax.set_ylabel(f"{symbol} price")
    ax.grid(alpha=0.3)
    if points:
        ax.legend(loc="upper left", fontsize="small")
    fig.autofmt_xdate()
    return fig


def _marker(
    ax: Axes, m: Marker, points: Sequence[tuple[float, float]], zone: ZoneInfo, *, label: bool
) -> None:
    from matplotlib.patheffects import withStroke

    y = at(points, m.ts)
    if y is None:
        return  # no price line to sit on
    gain = m.pnl is not None and m.pnl > 0
    color = "tab:blue" if m.kind == "entry" else "tab:green" if gain else "tab:red"
    shape = "^" if m.kind == "entry" else "v"
    x = datetime.fromtimestamp(m.ts, zone)
    ax.scatter(_x([m.ts], zone), [y], marker=shape, s=60, color=color, zorder=3)
    if label:
        ax.annotate(
            m.label,
            (x, y),
            textcoords="offset points",
            xytext=(4, 8 if m.kind == "entry" else -12),
            fontsize="x-small",
            color=color,
            path_effects=[withStroke(linewidth=2.5, foreground="white")],  # legible over the line
        )


def _x(ts: Sequence[float], zone: ZoneInfo) -> list[float]:
    """Epoch seconds as matplotlib's date numbers (days), for a date axis in ``zone``."""
    from matplotlib.dates import date2num

    return [float(date2num(datetime.fromtimestamp(t, zone))) for t in ts]


def at(points: Sequence[tuple[float, float]], ts: float) -> float | None:
    """The price at ``ts``, linear between the cycles' prices, held flat outside them."""
    if not points:
        return None
    if ts <= points[0][0]:
        return points[0][1]
    for (t0, p0), (t1, p1) in zip(points, points[1:], strict=False):
        if t0 <= ts <= t1:
            return p0 if t1 == t0 else p0 + (p1 - p0) * (ts - t0) / (t1 - t0)
    return points[-1][1]
