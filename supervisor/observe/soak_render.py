"""The soak report as text, and as a picture (matplotlib, imported only when plotting)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from supervisor.observe.soak import Report, _rss_lines, _series, is_counter


def format_report(report: Report) -> str:
    t = report.thresholds
    lines = [
        f"soak report: {len(report.files)} file(s), {report.records} records, "
        f"{report.malformed_lines} malformed line(s) skipped",
        f"duration: {_hms(report.duration_s)} (warm-up {t.warmup_s:g} s excluded from slopes "
        f"and growth)",
        f"cycles: {report.cycles}, time p50 {_s(report.cycle_p50_s)} p95 "
        f"{_s(report.cycle_p95_s)} max {_s(report.cycle_max_s)}; symbols ok "
        f"{report.symbols_ok} failed {report.symbols_failed}",
        "errors by code: "
        + (", ".join(f"{k} {v:g}" for k, v in report.errors_by_code.items()) or "none"),
    ]
    if report.counters:
        lines.append(
            "counters (run total): " + ", ".join(f"{k} {v:g}" for k, v in report.counters.items())
        )
    lines.append(f"{'process RSS (KB)':<28}{'start':>10}{'end':>10}{'max':>10}{'slope KB/h':>12}")
    for p in report.processes:
        slope = "too short" if p.slope_kb_per_h is None else f"{p.slope_kb_per_h:.0f}"
        lines.append(
            f"  {p.name + f' (pid {p.pid})':<26}{p.rss_start_kb:>10.0f}"
            f"{p.rss_end_kb:>10.0f}{p.rss_max_kb:>10.0f}{slope:>12}"
        )
    if report.buffers:
        lines.append(f"{'buffers after warm-up':<28}{'first':>10}{'last':>10}{'growth':>10}")
        for b in report.buffers:
            lines.append(
                f"  {b.name:<26}{b.first:>10.1f}{b.last:>10.1f}{b.growth:>10.1f} {b.unit}".rstrip()
            )
    lines.append("checks:")
    lines += [f"  {c.status:<4} {c.name}: {c.detail}" for c in report.checks]
    if report.incomplete:
        lines.append(f"  INCOMPLETE run length: {report.incomplete}")
    lines.append(f"thresholds: {report.thresholds_from}")
    verdict = report.verdict
    if verdict == "FAIL":
        verdict += " (" + ", ".join(report.failed_checks) + ")"
    lines.append(f"verdict: {verdict}")
    return "\n".join(lines)


def _hms(seconds: float) -> str:
    whole = int(seconds)
    return f"{whole // 3600}h{whole % 3600 // 60:02d}m{whole % 60:02d}s"


def _s(value: float | None) -> str:
    return "-" if value is None else f"{value:.2f} s"


MAX_COUNT_LINES = 8  # level series drawn beside the buffers; more would be an unreadable key


def time_unit(span_s: float) -> tuple[str, float]:
    """The x axis unit that fits the run: seconds, minutes or hours (name, seconds each)."""
    if span_s < 180:
        return "seconds", 1.0
    return ("minutes", 60.0) if span_s < 3 * 3600 else ("hours", 3600.0)


def plot(
    records: list[dict[str, Any]], out: Path, warmup_s: float = 0.0, verdict: str = ""
) -> None:
    """RSS per process (top); buffer levels (bottom: _bytes in KB left, the levels that
    moved on the right); the verdict in the title, the warm-up marked."""
    import matplotlib

    matplotlib.use("Agg")  # files only: no display needed on a server
    import matplotlib.pyplot as plt

    start = records[0]["ts"] if records else 0.0
    span_s = records[-1]["ts"] - start if records else 0.0
    unit, per = time_unit(span_s)

    def at(points: list[tuple[float, float]]) -> list[float]:
        return [(ts - start) / per for ts, _ in points]

    fig, (top, bottom) = plt.subplots(2, 1, sharex=True, figsize=(12, 8))
    counts = bottom.twinx()  # counts (tickers, requests) would vanish beside byte sizes
    palette = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    counts.set_prop_cycle(color=palette[3:] + palette[:3])  # not the byte lines' colours
    for (name, pid), points in _rss_lines(records).items():
        top.plot(at(points), [v / 1024 for _, v in points], label=f"{name} (pid {pid})")
    levels = []
    for name, points in sorted(_series(records, "buffers").items()):
        if name.endswith("_bytes") and not is_counter(name):
            bottom.plot(at(points), [v / 1024 for _, v in points], label=f"{name} (KB)")
        elif not is_counter(name) and len({v for _, v in points}) > 1:
            levels.append((name, points))  # a level that never moved says nothing here
    for name, points in levels[:MAX_COUNT_LINES]:
        counts.plot(at(points), [v for _, v in points], "--", label=name)
    title = f"soak over {_hms(span_s)}, {len(records)} samples"
    fig.suptitle(title + (f" · verdict: {verdict}" if verdict else ""), fontsize="large")
    top.set_ylabel("RSS (MB)")
    bottom.set_ylabel("buffer size (KB)")
    counts.set_ylabel("count (levels that moved)")
    bottom.set_xlabel(f"{unit} since the first sample (dotted: end of warm-up)")
    for axes in (top, bottom):
        axes.axvline(warmup_s / per, color="grey", linewidth=0.8, linestyle=":")
        axes.grid(alpha=0.3)
    for axes, where in ((top, "upper left"), (bottom, "upper left"), (counts, "upper right")):
        if axes.get_legend_handles_labels()[0]:
            axes.legend(fontsize="small", loc=where, framealpha=0.8)
    fig.tight_layout()
    fig.savefig(out, dpi=110)
    plt.close(fig)
