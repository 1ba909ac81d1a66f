"""The soak verdict (supervisor/observe/soak.py) over synthetic metrics: leaks, flat series,
buffers, warnings, counters, malformed and rotated files."""

from __future__ import annotations

import json
import random
from collections.abc import Sequence
from pathlib import Path

import pytest

from supervisor.observe.soak import (
    Thresholds,
    analyse,
    counter_total,
    expand_rotated,
    load_records,
    percentile,
)

pytestmark = pytest.mark.timeout(60)

START_TS = 1_767_886_200.0
STEP_S = 30.0
HOURS = 4.0


def synthetic(
    *,
    leak_kb_per_h: float = 0.0,
    noise_kb: float = 2048.0,
    warmup_rise_kb: float = 0.0,
    buffer_growth_bytes: float = 0.0,
    warnings_at: int | None = None,
    seed: int = 1,
) -> list[dict]:
    """Four simulated hours every 30 s: a supervisor and a worker, buffers, cycles.

    The worker leaks ``leak_kb_per_h``; both have uniform RSS noise of +-``noise_kb``. A rise
    of ``warmup_rise_kb`` happens within the first 5 minutes only (start-up, not a leak).
    """
    rng = random.Random(seed)
    records = []
    n = int(HOURS * 3600 / STEP_S) + 1
    for i in range(n):
        t = i * STEP_S
        startup = warmup_rise_kb * min(t / 240.0, 1.0)
        procs: dict[str, dict[str, float | None]] = {
            "supervisor": {"pid": 100, "rss_kb": 90_000 + startup + rng.uniform(-1, 1) * noise_kb},
            "worker-1": {
                "pid": 101,
                "rss_kb": 60_000
                + startup
                + leak_kb_per_h * t / 3600
                + rng.uniform(-1, 1) * noise_kb,
            },
        }
        for figures in procs.values():
            figures.update(uss_kb=None, cpu_pct=0.1, threads=3, open_files=1, fds=12)
        warnings = 1 if warnings_at is not None and i >= warnings_at else 0
        records.append(
            {
                "ts": START_TS + t,
                "mono": 1000.0 + t,
                "processes": procs,
                "buffers": {
                    "live_tickers": 0,
                    "pending_requests": rng.choice([0, 0, 1]),
                    "recv_buffer_bytes": 4096 + buffer_growth_bytes * t / (HOURS * 3600),
                    "bytes_in_total": 1000 * i,
                    "errors.2104": i // 100,
                },
                "gateway_log": {"output_exceeded": warnings, "ebuffer_grown": 0},
                "cycle": {"cycle_id": i, "seconds": 0.3 + (i % 10) / 100, "ok": 3, "failed": 0},
            }
        )
    return records


def write_jsonl(path: Path, records: list[dict], extra_lines: Sequence[str] = ()) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in records) + "".join(extra_lines))
    return path


def check(report, name: str):
    return next(c for c in report.checks if c.name == name)


def test_a_two_mb_per_hour_leak_fails_naming_the_process_and_its_slope():
    report = analyse(synthetic(leak_kb_per_h=2048))

    assert not report.passed
    assert report.failed_checks == ["memory"]
    worker = next(p for p in report.processes if p.name == "worker-1")
    assert worker.slope_kb_per_h == pytest.approx(2048, rel=0.10)
    detail = check(report, "memory").detail
    assert "worker-1" in detail and f"{worker.slope_kb_per_h:.0f} KB/h" in detail
    assert "supervisor" not in detail


def test_a_flat_noisy_series_passes():
    report = analyse(synthetic())

    assert report.passed, report.checks
    assert [c.status for c in report.checks] == ["PASS", "PASS", "PASS"]
    for proc in report.processes:
        assert proc.slope_kb_per_h is not None
        assert abs(proc.slope_kb_per_h) < 300  # noise, far below the 1024 KB/h limit


def test_buffer_growth_over_50_kb_fails():
    report = analyse(synthetic(buffer_growth_bytes=80 * 1024))

    assert report.failed_checks == ["buffer growth"]
    buffer = next(b for b in report.buffers if b.name == "recv_buffer_bytes")
    assert buffer.unit == "KB"
    assert 70 < buffer.growth < 80  # the warm-up's share is excluded
    assert "recv_buffer_bytes" in check(report, "buffer growth").detail


def test_buffer_growth_under_the_limit_passes():
    assert analyse(synthetic(buffer_growth_bytes=40 * 1024)).passed


def test_one_gateway_buffer_warning_fails():
    report = analyse(synthetic(warnings_at=200))

    assert report.failed_checks == ["buffer warnings"]
    assert report.gateway_warnings == {"output_exceeded": 1, "ebuffer_grown": 0}
    assert analyse(synthetic(warnings_at=200), Thresholds(max_buffer_warnings=1)).passed


def test_unwatched_gateway_log_is_skipped_not_passed():
    records = synthetic()
    for record in records:
        record["gateway_log"] = None

    report = analyse(records)

    assert check(report, "buffer warnings").status == "SKIP"
    assert report.passed


def test_a_big_rise_in_the_warmup_only_still_passes():
    records = synthetic(warmup_rise_kb=50_000)

    report = analyse(records)
    unwarmed = analyse(records, Thresholds(warmup_s=0))

    assert report.passed, report.checks
    slopes = [abs(p.slope_kb_per_h or 0.0) for p in report.processes]
    unwarmed_slopes = [p.slope_kb_per_h or 0.0 for p in unwarmed.processes]
    assert max(slopes) < 300  # only noise once the start-up is left out
    assert min(unwarmed_slopes) > 400  # counted in, the start-up rise tilts the fit


def test_counts_cycles_errors_and_counters():
    report = analyse(synthetic())

    assert report.records == report.cycles == 481
    assert report.duration_s == pytest.approx(4 * 3600)
    assert report.cycle_p50_s == pytest.approx(0.34)
    assert report.cycle_max_s == pytest.approx(0.39)
    assert report.symbols_ok == 3 * 481 and report.symbols_failed == 0
    assert report.errors_by_code == {"errors.2104": 4}
    assert report.counters == {"bytes_in_total": 480_000}


def test_a_repeated_cycle_summary_is_counted_once():
    records = synthetic()[:3]
    records[1]["cycle"] = records[2]["cycle"] = {
        "cycle_id": 7,
        "seconds": 1.0,
        "ok": 1,
        "failed": 1,
    }
    assert analyse(records).cycles == 2


def test_no_steady_state_data_fails():
    report = analyse(synthetic()[:5])

    assert "steady-state data" in report.failed_checks
    assert analyse([]).failed_checks == ["steady-state data"]


def test_counter_total_survives_restarts():
    assert counter_total([0, 2, 5, 1, 3]) == 8  # 5 before the restart, 3 after
    assert counter_total([]) == 0
    assert percentile([1.0, 2.0, 3.0, 4.0], 0.5) == 2.0
    assert percentile([], 0.5) is None


def test_malformed_lines_are_skipped_and_named(tmp_path):
    path = write_jsonl(
        tmp_path / "m.jsonl",
        synthetic()[:3],
        ["{not json\n", "[1, 2]\n", '{"ts": "yesterday"}\n', "\n"],
    )

    records, problems = load_records([path])

    assert len(records) == 3
    assert problems == [
        f"{path}:4: not JSON (Expecting property name enclosed in double quotes)",
        f"{path}:5: not a JSON object",
        f"{path}:6: no numeric 'ts'",
    ]


def test_rotated_files_are_found_and_read_in_time_order(tmp_path):
    records = synthetic()
    current = write_jsonl(tmp_path / "metrics.jsonl", records[300:])
    write_jsonl(tmp_path / "metrics.jsonl.1", records[100:300])
    write_jsonl(tmp_path / "metrics.jsonl.2", records[:100])

    paths = expand_rotated([current])
    loaded, problems = load_records(paths)

    assert [p.name for p in paths] == ["metrics.jsonl", "metrics.jsonl.1", "metrics.jsonl.2"]
    assert problems == []
    assert [r["ts"] for r in loaded] == [r["ts"] for r in records]


def test_report_figures_read_as_a_person_writes_them() -> None:
    # T1 saw 'warm-up 0.472047 s' and 'within 1.56188e+07 KB/h' (fixed in 94d88f2)
    from supervisor.observe.soak import _figure
    from supervisor.observe.soak_render import seconds

    assert seconds(0.472047) == "0.47 s" and seconds(4.24) == "4.2 s" and seconds(300.4) == "300 s"
    assert _figure(15_618_800.4) == "15618800" and _figure(0.5) == "0.5" and _figure(50.0) == "50"
