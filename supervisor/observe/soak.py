"""The soak verdict: metrics records in, a Report of memory and buffer checks out. Stdlib only.

The metrics line schema is documented in ``supervisor/observe/metrics.py``; the buffer naming
convention: ``errors.<code>`` / ``warnings.<code>`` and names ending ``_total`` are cumulative
counters (reported as run totals, a drop means the process restarted); every other buffer is
a level, and a level ending ``_bytes`` is a buffer size judged against the growth limit.

Checks (the original report's Phase 3 criteria, every threshold a parameter):
- memory: each process's RSS slope after its warm-up (least squares, KB/hour) at most
  ``max_rss_slope_kb_per_h``, and its growth after the warm-up (mean of the last three
  samples minus the first three) at most ``max_rss_growth_kb``. Warm-up counts from each
  process's first sample (a respawned worker or a restarted supervisor warms up again:
  processes are told apart by name and pid);
  a process seen for less than ``min_span_s`` after warm-up is reported but not judged;
- buffer growth: each ``_bytes`` level's last minus first value after the run's warm-up, in
  KB; other levels (live tickers, pending requests, queue depths) are reported, not judged;
- buffer warnings: the gateway log's "Output exceeded limit" and "EBuffer … has grown" lines;
  skipped (said so) when the gateway log was not watched.
No steady-state data at all is a FAIL: a soak that measured nothing proved nothing. A run
stopped before its planned length, or whose end was never recorded, is INCOMPLETE (see
``soak_run``), never a PASS.
``tools/soak_report.py`` is the command over this module; ``phases`` uses it directly.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from supervisor.observe.soak_run import run_length

COUNTER_PREFIXES = ("errors.", "warnings.")
COMPRESSED_BELOW_S = 3600.0  # a soak shorter than this gets thresholds scaled to its length


@dataclass(frozen=True)
class Thresholds:
    warmup_s: float = 300.0
    max_buffer_growth_kb: float = 50.0
    max_rss_slope_kb_per_h: float = 1024.0
    max_buffer_warnings: int = 0
    min_span_s: float = 600.0
    # an absolute budget as well as a slope: a slope per hour over a short steady state
    # magnifies noise, a budget in KB means the same at any length
    max_rss_growth_kb: float = 16_384.0


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
    growth_kb: float | None = None  # steady state: mean of the last 3 minus the first 3


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
    incomplete: str | None = None  # why the soak is not whole (stopped early, killed)
    thresholds_from: str = "defaults"  # or "the metrics file", "command line"

    @property
    def verdict(self) -> str:
        if any(c.status == "FAIL" for c in self.checks):
            return "FAIL"
        return "INCOMPLETE" if self.incomplete else "PASS"

    @property
    def passed(self) -> bool:
        return self.verdict == "PASS"

    @property
    def failed_checks(self) -> list[str]:
        return [c.name for c in self.checks if c.status == "FAIL"]

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["verdict"] = self.verdict
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


def least_squares_slope(points: Iterable[tuple[float, ...]]) -> float | None:
    """Slope of y over x for (x, y, ...) points; None with fewer than 2 distinct x values."""
    pts = list(points)
    n = len(pts)
    if n < 2:
        return None
    mean_x = sum(p[0] for p in pts) / n
    mean_y = sum(p[1] for p in pts) / n
    sxx = sum((p[0] - mean_x) ** 2 for p in pts)
    if sxx == 0:
        return None
    return sum((p[0] - mean_x) * (p[1] - mean_y) for p in pts) / sxx


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


def analyse(
    records: list[dict[str, Any]],
    thresholds: Thresholds | None = None,
    files: list[str] | None = None,
    malformed_lines: int = 0,
) -> Report:
    """The whole report from records in time order (see ``load_records``)."""
    thresholds = thresholds or Thresholds()
    duration_s = records[-1]["ts"] - records[0]["ts"] if records else 0.0
    report = Report(
        files=files or [],
        records=len(records),
        malformed_lines=malformed_lines,
        duration_s=duration_s,
        thresholds=thresholds,
    )
    _cycles(report, records)
    length = run_length(records)
    if length is not None:  # the runs' own count: samples miss cycles between them
        report.cycles = length.cycles
        report.incomplete = length.incomplete
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
        judged = span_s >= thresholds.min_span_s
        slope = least_squares_slope(steady) if judged else None
        growth = _growth([v for _, v in steady]) if judged else None
        stats.append(
            ProcessStats(
                name=name,
                pid=pid,
                samples=len(points),
                rss_start_kb=points[0][1],
                rss_end_kb=points[-1][1],
                rss_max_kb=max(v for _, v in points),
                steady_span_s=span_s,
                slope_kb_per_h=None if slope is None else slope * 3600.0,
                growth_kb=growth,
            )
        )
    return stats


def _growth(values: list[float]) -> float:
    ends = min(3, len(values))
    return sum(values[-ends:]) / ends - sum(values[:ends]) / ends


def _rss_lines(records: list[dict[str, Any]]) -> dict[tuple[str, int], list[tuple[float, float]]]:
    # Keyed by (name, pid): a restarted supervisor is a new process with its own warm-up.
    lines: dict[tuple[str, int], list[tuple[float, float]]] = {}
    for record in records:
        for name, figures in (record.get("processes") or {}).items():
            if isinstance(figures, dict) and _is_number(figures.get("rss_kb")):
                lines.setdefault((name, int(figures.get("pid") or 0)), []).append(
                    (record["ts"], float(figures["rss_kb"]))
                )
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
        checks.append(
            Check(
                "steady-state data",
                "FAIL",
                f"no process has {thresholds.min_span_s:.0f} s of samples after "
                f"the {thresholds.warmup_s:.0f} s warm-up",
            )
        )
    else:
        slope, budget = thresholds.max_rss_slope_kb_per_h, thresholds.max_rss_growth_kb
        limit = f"{_figure(slope)} KB/h and {_figure(budget)} KB"
        problems = [_memory_problem(p, thresholds) for p in judged]
        leaking = [p for p in problems if p]
        checks.append(
            Check(
                "memory",
                "FAIL" if leaking else "PASS",
                "; ".join(leaking) or f"{len(judged)} process(es) within {limit}",
            )
        )
    bytes_levels = [b for b in report.buffers if b.unit == "KB"]
    if not bytes_levels:
        checks.append(Check("buffer growth", "SKIP", "no *_bytes buffer measures recorded"))
    else:
        grown = [b for b in bytes_levels if b.growth > thresholds.max_buffer_growth_kb]
        limit = f"{_figure(thresholds.max_buffer_growth_kb)} KB"
        checks.append(
            Check(
                "buffer growth",
                "FAIL" if grown else "PASS",
                "; ".join(f"{b.name} grew {b.growth:.1f} KB > {limit}" for b in grown)
                or f"{len(bytes_levels)} buffer(s) within {limit}",
            )
        )
    if report.gateway_warnings is None:
        checks.append(
            Check(
                "buffer warnings",
                "SKIP",
                "gateway log not watched (monitoring.gateway_log_path unset)",
            )
        )
    else:
        total = sum(report.gateway_warnings.values())
        detail = ", ".join(f"{k} {v:g}" for k, v in sorted(report.gateway_warnings.items()))
        ok = total <= thresholds.max_buffer_warnings
        checks.append(
            Check(
                "buffer warnings",
                "PASS" if ok else "FAIL",
                f"{detail} (allowed {thresholds.max_buffer_warnings})",
            )
        )
    return checks


def _memory_problem(p: ProcessStats, thresholds: Thresholds) -> str:
    slope, growth = p.slope_kb_per_h or 0.0, p.growth_kb or 0.0
    if slope > thresholds.max_rss_slope_kb_per_h:
        return (
            f"{p.name} (pid {p.pid}) RSS grows {slope:.0f} KB/h > "
            f"{_figure(thresholds.max_rss_slope_kb_per_h)} KB/h"
        )
    if growth > thresholds.max_rss_growth_kb:
        return (
            f"{p.name} (pid {p.pid}) RSS grew {growth:.0f} KB after warm-up > "
            f"{_figure(thresholds.max_rss_growth_kb)} KB"
        )
    return ""


def _figure(value: float) -> str:
    """A limit as a person reads it: 5494552, not 5.49455e+06; 0.5 stays 0.5."""
    return f"{value:.0f}" if abs(value) >= 100 else f"{value:g}"


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)


def soak_thresholds(records: list[dict[str, Any]], soak_s: float, budget_kb: float) -> Thresholds:
    """The report's defaults for a real soak; scaled to the run for a compressed one."""
    if soak_s >= COMPRESSED_BELOW_S:
        return Thresholds()
    monos = [r["mono"] for r in records if isinstance(r.get("mono"), (int, float))]
    span = (max(monos) - min(monos)) if monos else 0.0
    warmup = 0.2 * span
    steady_h = max(span - warmup, 1.0) / 3600
    return Thresholds(
        warmup_s=warmup,
        min_span_s=0.5 * span,
        max_rss_slope_kb_per_h=budget_kb / steady_h,
        max_rss_growth_kb=budget_kb,
    )
