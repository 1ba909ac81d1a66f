"""The soak report as text, and as a picture (matplotlib, imported only when plotting)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from supervisor.observe.soak import Report


def format_report(report: Report) -> str:
    t = report.thresholds
    lines = [
        f"soak report: {len(report.files)} file(s), {report.records} records, "
        f"{report.malformed_lines} malformed line(s) skipped",
        f"duration: {_hms(report.duration_s)} (warm-up {seconds(t.warmup_s)} excluded from "
        f"slopes and growth)",
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


def seconds(value: float) -> str:
    """A duration to the precision a person reads: 0.17 s, 4.2 s, 300 s."""
    if value >= 10:
        return f"{value:.0f} s"
    return f"{value:.1f} s" if value >= 1 else f"{value:.2f} s"


def _s(value: float | None) -> str:
    return "-" if value is None else f"{value:.2f} s"


def time_unit(span_s: float) -> tuple[str, float]:
    """The x axis unit that fits the run: seconds, minutes or hours (name, seconds each)."""
    if span_s < 180:
        return "seconds", 1.0
    return ("minutes", 60.0) if span_s < 3 * 3600 else ("hours", 3600.0)


def plot(records: list[dict[str, Any]], out: Path, report: Report) -> None:
    """The verdict drawn where it is judged, written to ``out`` (PNG, see soak_plot.draw)."""
    import matplotlib

    matplotlib.use("Agg")  # files only: no display needed on a server
    import matplotlib.pyplot as plt

    from supervisor.observe.soak_plot import draw

    fig = draw(records, report)
    try:
        fig.savefig(out, dpi=110, bbox_inches="tight")  # the labels right of the axes too
    finally:
        plt.close(fig)
