"""The soak verdict: read the monitor's metrics JSONL, judge memory and buffers, PASS or FAIL.

    python tools/soak_report.py var/metrics.jsonl [MORE...] [--warmup-s 300]
        [--max-buffer-growth-kb 50] [--max-rss-slope-kb-per-h 1024] [--max-buffer-warnings 0]
        [--min-span-s 600] [--plot soak.png] [--json]

Each file's rotated siblings (``metrics.jsonl.1`` … ``.N``) are read too; records are put in
time order by ``ts``. Malformed lines are skipped, counted and named (file:line) on stderr.
The line schema is documented in ``supervisor/monitor.py``; the buffer naming convention:
``errors.<code>`` / ``warnings.<code>`` and names ending ``_total`` are cumulative counters
(reported as run totals, a drop means the process restarted); every other buffer is a level,
and a level ending ``_bytes`` is a buffer size judged against ``--max-buffer-growth-kb``.

Checks (the original report's Phase 3 criteria, every threshold a flag):
- memory: each process's RSS slope after its warm-up (least squares, KB/hour) at most
  ``--max-rss-slope-kb-per-h``. Warm-up counts from each process's first sample (a respawned
  worker or a restarted supervisor warms up again: processes are told apart by name and pid);
  a process seen for less than ``--min-span-s`` after warm-up is reported but not judged;
- buffer growth: each ``_bytes`` level's last minus first value after the run's warm-up, in
  KB; other levels (live tickers, pending requests, queue depths) are reported, not judged;
- buffer warnings: the gateway log's "Output exceeded limit" and "EBuffer … has grown" lines;
  skipped (said so) when the gateway log was not watched.
No steady-state data at all is a FAIL: a soak that measured nothing proved nothing.

Exit codes: 0 PASS, 1 FAIL, 2 bad usage (missing file, matplotlib missing for --plot).
Only the standard library is needed (matplotlib for --plot), so the report runs wherever the
metrics files are copied to.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from collections.abc import Iterable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

EXIT_PASS, EXIT_FAIL, EXIT_USAGE = 0, 1, 2
MAX_NAMED_PROBLEMS = 20  # malformed lines named on stderr; the rest are only counted
COUNTER_PREFIXES = ("errors.", "warnings.")


@dataclass(frozen=True)
class Thresholds:
    warmup_s: float = 300.0
    max_buffer_growth_kb: float = 50.0
    max_rss_slope_kb_per_h: float = 1024.0
    max_buffer_warnings: int = 0
    min_span_s: float = 600.0


@dataclass
class ProcessStats:
    name: str
    pid: int
    samples: int
    rss_start_kb: float
    rss_end_kb: float
    rss_max_kb: float
    steady_span_s: float
    slope_kb_per_h: float | None  # None: too little steady-state data to judge


@dataclass
class BufferStats:
    name: str
    first: float
    last: float
    growth: float
    unit: str  # "KB" for _bytes levels (values converted), "" for counts


@dataclass
class Check:
    name: str
    status: str  # PASS, FAIL or SKIP
    detail: str


@dataclass
class Report:
    files: list[str]
    records: int
    malformed_lines: int
    duration_s: float
    thresholds: Thresholds
    cycles: int = 0
    cycle_p50_s: float | None = None
    cycle_p95_s: float | None = None
    cycle_max_s: float | None = None
    symbols_ok: int = 0
    symbols_failed: int = 0
    errors_by_code: dict[str, float] = field(default_factory=dict)
    counters: dict[str, float] = field(default_factory=dict)
    processes: list[ProcessStats] = field(default_factory=list)
    buffers: list[BufferStats] = field(default_factory=list)
    gateway_warnings: dict[str, float] | None = None
    checks: list[Check] = field(default_factory=list)

    @property
    def passed(self) -> bool:
        return all(c.status != "FAIL" for c in self.checks)

    @property
    def failed_checks(self) -> list[str]:
        return [c.name for c in self.checks if c.status == "FAIL"]

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["verdict"] = "PASS" if self.passed else "FAIL"
        data["failed_checks"] = self.failed_checks
        return data


# ---- reading ---------------------------------------------------------------------------------

def expand_rotated(paths: Iterable[Path]) -> list[Path]:
    """Each path plus its rotated siblings (path.1, path.2 …), each file once."""
    seen: dict[Path, None] = {}
    for path in paths:
        seen.setdefault(path, None)
        n = 1
        while (rotated := path.with_name(f"{path.name}.{n}")).exists():
            seen.setdefault(rotated, None)
            n += 1
    return list(seen)


def parse_line(text: str) -> dict[str, Any]:
    """One metrics record; ValueError names what is wrong with the line."""
    try:
        record = json.loads(text)
    except json.JSONDecodeError as exc:
        raise ValueError(f"not JSON ({exc.msg})") from None
    if not isinstance(record, dict):
        raise ValueError("not a JSON object")
    if not _is_number(record.get("ts")):
        raise ValueError("no numeric 'ts'")
    for key in ("processes", "buffers"):
        if not isinstance(record.get(key, {}), dict):
            raise ValueError(f"'{key}' is not an object")
    for key in ("gateway_log", "cycle"):
        if record.get(key) is not None and not isinstance(record[key], dict):
            raise ValueError(f"'{key}' is neither an object nor null")
    return record


def load_records(paths: Iterable[Path]) -> tuple[list[dict[str, Any]], list[str]]:
    """All well-formed records in time order, and one 'file:line: reason' per skipped line."""
    records: list[dict[str, Any]] = []
    problems: list[str] = []
    for path in paths:
        with open(path, encoding="utf-8", errors="replace") as f:
            for number, text in enumerate(f, start=1):
                if not text.strip():
                    continue
                try:
                    records.append(parse_line(text))
                except ValueError as exc:
                    problems.append(f"{path}:{number}: {exc}")
    records.sort(key=lambda r: r["ts"])  # stable: equal stamps keep file order
    return records, problems


# ---- computing -------------------------------------------------------------------------------

def least_squares_slope(points: list[tuple[float, float]]) -> float | None:
    """Slope of y over x; None with fewer than 2 distinct x values.

    The same fit as ``supervisor.monitor.least_squares_slope``, repeated here so this tool
    needs nothing but the standard library.
    """
    n = len(points)
    if n < 2:
        return None
    mean_x = sum(x for x, _ in points) / n
    mean_y = sum(y for _, y in points) / n
    sxx = sum((x - mean_x) ** 2 for x, _ in points)
    if sxx == 0:
        return None
    return sum((x - mean_x) * (y - mean_y) for x, y in points) / sxx


def percentile(sorted_values: list[float], fraction: float) -> float | None:
    """Nearest-rank percentile of already sorted values."""
    if not sorted_values:
        return None
    rank = max(1, math.ceil(fraction * len(sorted_values)))
    return sorted_values[rank - 1]


def counter_total(values: list[float]) -> float:
    """What a cumulative counter added over the run; a drop is a restart counting from 0."""
    total, previous = 0.0, 0.0
    for value in values:
        total += value - previous if value >= previous else value
        previous = value
    return total


def is_counter(name: str) -> bool:
    return name.startswith(COUNTER_PREFIXES) or name.endswith("_total")


def analyse(records: list[dict[str, Any]], thresholds: Thresholds | None = None,
            files: list[str] | None = None, malformed_lines: int = 0) -> Report:
    """The whole report from records in time order (see ``load_records``)."""
    thresholds = thresholds or Thresholds()
    duration_s = records[-1]["ts"] - records[0]["ts"] if records else 0.0
    report = Report(files=files or [], records=len(records), malformed_lines=malformed_lines,
                    duration_s=duration_s, thresholds=thresholds)
    _cycles(report, records)
    _counters(report, records)
    report.processes = _processes(records, thresholds)
    report.buffers = _buffer_levels(records, thresholds)
    report.gateway_warnings = _gateway_warnings(records)
    report.checks = _checks(report, thresholds)
    return report


def _cycles(report: Report, records: list[dict[str, Any]]) -> None:
    seconds: list[float] = []
    previous = None
    for record in records:
        cycle = record.get("cycle")
        if not cycle or cycle == previous:
            continue  # no cycle ended since the last sample: the same summary repeated
        previous = cycle
        if _is_number(cycle.get("seconds")):
            seconds.append(float(cycle["seconds"]))
        report.symbols_ok += int(cycle.get("ok") or 0)
        report.symbols_failed += int(cycle.get("failed") or 0)
        report.cycles += 1
    seconds.sort()
    report.cycle_p50_s = percentile(seconds, 0.50)
    report.cycle_p95_s = percentile(seconds, 0.95)
    report.cycle_max_s = seconds[-1] if seconds else None


def _series(records: list[dict[str, Any]], section: str) -> dict[str, list[tuple[float, float]]]:
    series: dict[str, list[tuple[float, float]]] = {}
    for record in records:
        for name, value in (record.get(section) or {}).items():
            if _is_number(value):
                series.setdefault(name, []).append((record["ts"], float(value)))
    return series


def _counters(report: Report, records: list[dict[str, Any]]) -> None:
    for name, points in sorted(_series(records, "buffers").items()):
        if not is_counter(name):
            continue
        total = counter_total([v for _, v in points])
        if name.startswith(COUNTER_PREFIXES):
            report.errors_by_code[name] = total
        else:
            report.counters[name] = total


def _processes(records: list[dict[str, Any]], thresholds: Thresholds) -> list[ProcessStats]:
    stats = []
    for (name, pid), points in _rss_lines(records).items():
        steady = [p for p in points if p[0] - points[0][0] >= thresholds.warmup_s]
        span_s = steady[-1][0] - steady[0][0] if steady else 0.0
        slope = least_squares_slope(steady) if span_s >= thresholds.min_span_s else None
        stats.append(ProcessStats(
            name=name, pid=pid, samples=len(points), rss_start_kb=points[0][1],
            rss_end_kb=points[-1][1], rss_max_kb=max(v for _, v in points),
            steady_span_s=span_s, slope_kb_per_h=None if slope is None else slope * 3600.0))
    return stats


def _rss_lines(records: list[dict[str, Any]]) -> dict[tuple[str, int], list[tuple[float, float]]]:
    # Keyed by (name, pid): a restarted supervisor is a new process with its own warm-up.
    lines: dict[tuple[str, int], list[tuple[float, float]]] = {}
    for record in records:
        for name, figures in (record.get("processes") or {}).items():
            if isinstance(figures, dict) and _is_number(figures.get("rss_kb")):
                lines.setdefault((name, int(figures.get("pid") or 0)), []).append(
                    (record["ts"], float(figures["rss_kb"])))
    return lines


def _buffer_levels(records: list[dict[str, Any]], thresholds: Thresholds) -> list[BufferStats]:
    if not records:
        return []
    start_ts = records[0]["ts"] + thresholds.warmup_s
    stats = []
    for name, points in sorted(_series(records, "buffers").items()):
        steady = [v for ts, v in points if ts >= start_ts]
        if is_counter(name) or not steady:
            continue
        scale, unit = (1 / 1024, "KB") if name.endswith("_bytes") else (1.0, "")
        first, last = steady[0] * scale, steady[-1] * scale
        stats.append(BufferStats(name, first, last, last - first, unit))
    return stats


def _gateway_warnings(records: list[dict[str, Any]]) -> dict[str, float] | None:
    series = _series(records, "gateway_log")
    if not series:
        return None  # the gateway log was not watched
    return {name: counter_total([v for _, v in points]) for name, points in series.items()}


def _checks(report: Report, thresholds: Thresholds) -> list[Check]:
    checks = []
    judged = [p for p in report.processes if p.slope_kb_per_h is not None]
    if not judged:
        checks.append(Check("steady-state data", "FAIL",
                            f"no process has {thresholds.min_span_s:.0f} s of samples after "
                            f"the {thresholds.warmup_s:.0f} s warm-up"))
    else:
        leaking = [p for p in judged
                   if (p.slope_kb_per_h or 0.0) > thresholds.max_rss_slope_kb_per_h]
        limit = f"{thresholds.max_rss_slope_kb_per_h:g} KB/h"
        checks.append(Check(
            "memory", "FAIL" if leaking else "PASS",
            "; ".join(f"{p.name} (pid {p.pid}) RSS grows {p.slope_kb_per_h:.0f} KB/h > {limit}"
                      for p in leaking)
            or f"{len(judged)} process(es) within {limit}"))
    bytes_levels = [b for b in report.buffers if b.unit == "KB"]
    if not bytes_levels:
        checks.append(Check("buffer growth", "SKIP", "no *_bytes buffer measures recorded"))
    else:
        grown = [b for b in bytes_levels if b.growth > thresholds.max_buffer_growth_kb]
        limit = f"{thresholds.max_buffer_growth_kb:g} KB"
        checks.append(Check(
            "buffer growth", "FAIL" if grown else "PASS",
            "; ".join(f"{b.name} grew {b.growth:.1f} KB > {limit}" for b in grown)
            or f"{len(bytes_levels)} buffer(s) within {limit}"))
    if report.gateway_warnings is None:
        checks.append(Check("buffer warnings", "SKIP",
                            "gateway log not watched (monitoring.gateway_log_path unset)"))
    else:
        total = sum(report.gateway_warnings.values())
        detail = ", ".join(f"{k} {v:g}" for k, v in sorted(report.gateway_warnings.items()))
        ok = total <= thresholds.max_buffer_warnings
        checks.append(Check("buffer warnings", "PASS" if ok else "FAIL",
                            f"{detail} (allowed {thresholds.max_buffer_warnings})"))
    return checks


def _is_number(value: Any) -> bool:
    return (isinstance(value, int | float) and not isinstance(value, bool)
            and math.isfinite(value))


# ---- presenting ------------------------------------------------------------------------------

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
        "errors by code: " + (", ".join(f"{k} {v:g}" for k, v in report.errors_by_code.items())
                              or "none"),
    ]
    if report.counters:
        lines.append("counters (run total): "
                     + ", ".join(f"{k} {v:g}" for k, v in report.counters.items()))
    lines.append(f"{'process RSS (KB)':<28}{'start':>10}{'end':>10}{'max':>10}{'slope KB/h':>12}")
    for p in report.processes:
        slope = "too short" if p.slope_kb_per_h is None else f"{p.slope_kb_per_h:.0f}"
        lines.append(f"  {p.name + f' (pid {p.pid})':<26}{p.rss_start_kb:>10.0f}"
                     f"{p.rss_end_kb:>10.0f}{p.rss_max_kb:>10.0f}{slope:>12}")
    if report.buffers:
        lines.append(f"{'buffers after warm-up':<28}{'first':>10}{'last':>10}{'growth':>10}")
        for b in report.buffers:
            lines.append(f"  {b.name:<26}{b.first:>10.1f}{b.last:>10.1f}{b.growth:>10.1f} "
                         f"{b.unit}".rstrip())
    lines.append("checks:")
    lines += [f"  {c.status:<4} {c.name}: {c.detail}" for c in report.checks]
    verdict = "PASS" if report.passed else "FAIL (" + ", ".join(report.failed_checks) + ")"
    lines.append(f"verdict: {verdict}")
    return "\n".join(lines)


def _hms(seconds: float) -> str:
    whole = int(seconds)
    return f"{whole // 3600}h{whole % 3600 // 60:02d}m{whole % 60:02d}s"


def _s(value: float | None) -> str:
    return "-" if value is None else f"{value:.2f} s"


def plot(records: list[dict[str, Any]], out: Path, warmup_s: float = 0.0) -> None:
    """RSS per process (top); buffer levels (bottom: _bytes in KB left, counts right)."""
    import matplotlib

    matplotlib.use("Agg")  # files only: no display needed on a server
    import matplotlib.pyplot as plt

    start = records[0]["ts"] if records else 0.0

    def hours(points: list[tuple[float, float]]) -> list[float]:
        return [(ts - start) / 3600 for ts, _ in points]

    fig, (top, bottom) = plt.subplots(2, 1, sharex=True, figsize=(11, 7))
    counts = bottom.twinx()  # counts (tickers, requests) would vanish beside byte sizes
    palette = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    counts.set_prop_cycle(color=palette[3:] + palette[:3])  # not the byte lines' colours
    for (name, pid), points in _rss_lines(records).items():
        top.plot(hours(points), [v / 1024 for _, v in points], label=f"{name} ({pid})")
    for name, points in sorted(_series(records, "buffers").items()):
        if name.endswith("_bytes") and not is_counter(name):
            bottom.plot(hours(points), [v / 1024 for _, v in points], label=f"{name} (KB)")
        elif not is_counter(name):
            counts.plot(hours(points), [v for _, v in points], "--", label=name)
    top.set_ylabel("RSS (MB)")
    bottom.set_ylabel("buffer size (KB)")
    counts.set_ylabel("count")
    bottom.set_xlabel("hours since start")
    for axes in (top, bottom):
        axes.axvline(warmup_s / 3600, color="grey", linewidth=0.8, linestyle=":")
    for axes, where in ((top, "upper left"), (bottom, "upper left"), (counts, "upper right")):
        if axes.get_legend_handles_labels()[0]:
            axes.legend(fontsize="small", loc=where)
    fig.tight_layout()
    fig.savefig(out)
    plt.close(fig)


# ---- command line ----------------------------------------------------------------------------

def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("metrics", nargs="+", type=Path, help="metrics JSONL file(s)")
    defaults = Thresholds()
    parser.add_argument("--warmup-s", type=float, default=defaults.warmup_s)
    parser.add_argument("--max-buffer-growth-kb", type=float,
                        default=defaults.max_buffer_growth_kb)
    parser.add_argument("--max-rss-slope-kb-per-h", type=float,
                        default=defaults.max_rss_slope_kb_per_h)
    parser.add_argument("--max-buffer-warnings", type=int, default=defaults.max_buffer_warnings)
    parser.add_argument("--min-span-s", type=float, default=defaults.min_span_s,
                        help="steady-state seconds a process needs before its slope is judged")
    parser.add_argument("--plot", type=Path, help="write RSS and buffer levels to this PNG")
    parser.add_argument("--json", action="store_true", help="print the report as JSON")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    for path in args.metrics:
        if not path.is_file():
            reason = "not a regular file" if path.exists() else "no such file"
            print(f"soak_report: {reason}: {path}", file=sys.stderr)
            return EXIT_USAGE
    if args.plot is not None:
        try:
            import matplotlib  # noqa: F401
        except ImportError:
            print("matplotlib is not installed: pip install -e '.[plot]'", file=sys.stderr)
            return EXIT_USAGE
    paths = expand_rotated(args.metrics)
    try:
        records, problems = load_records(paths)
    except OSError as exc:
        print(f"soak_report: cannot read {exc.filename}: {exc.strerror}", file=sys.stderr)
        return EXIT_USAGE
    for problem in problems[:MAX_NAMED_PROBLEMS]:
        print(f"skipped {problem}", file=sys.stderr)
    if len(problems) > MAX_NAMED_PROBLEMS:
        print(f"skipped {len(problems) - MAX_NAMED_PROBLEMS} more malformed line(s)",
              file=sys.stderr)
    thresholds = Thresholds(args.warmup_s, args.max_buffer_growth_kb,
                            args.max_rss_slope_kb_per_h, args.max_buffer_warnings,
                            args.min_span_s)
    report = analyse(records, thresholds, [str(p) for p in paths], len(problems))
    print(json.dumps(report.to_dict(), indent=2) if args.json else format_report(report))
    if args.plot is not None:
        try:
            plot(records, args.plot, thresholds.warmup_s)
        except OSError as exc:
            print(f"soak_report: cannot write the plot {args.plot}: {exc.strerror}",
                  file=sys.stderr)
            return EXIT_USAGE
    return EXIT_PASS if report.passed else EXIT_FAIL


if __name__ == "__main__":
    sys.exit(main())
