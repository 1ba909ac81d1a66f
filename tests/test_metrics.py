"""The soak monitor: process samples, metrics rotation, gateway log counts, respawned workers."""

from __future__ import annotations

import json
import multiprocessing
import os
import time
from collections.abc import Iterator
from pathlib import Path

import psutil
import pytest

from common.config import MonitoringSettings
from supervisor.observe.metrics import (
    GatewayLogWatcher,
    MetricsWriter,
    Monitor,
    ProcessSampler,
    sample_process,
)
from supervisor.observe.soak import least_squares_slope

pytestmark = pytest.mark.timeout(60)

FIELDS = {"pid", "rss_kb", "uss_kb", "cpu_pct", "threads", "open_files", "fds"}


def sleep_when_ready(ready) -> None:
    ready.set()
    time.sleep(60)


@pytest.fixture
def spawn_child() -> Iterator:
    """Start sleeping spawned children; every one is terminated and reaped afterwards."""
    ctx = multiprocessing.get_context("spawn")
    children = []

    def start():
        ready = ctx.Event()
        child = ctx.Process(target=sleep_when_ready, args=(ready,), daemon=True)
        child.start()
        children.append(child)
        assert ready.wait(50), "the spawned child never started"  # an interpreter by now
        return child

    yield start
    for child in children:
        child.terminate()
        child.join(10)


def dead_pid(child) -> int:
    child.terminate()
    child.join(10)
    assert not psutil.pid_exists(child.pid) or psutil.Process(child.pid).status() == "zombie"
    return child.pid


def settings(tmp_path: Path, **overrides) -> MonitoringSettings:
    return MonitoringSettings(metrics_path=str(tmp_path / "m" / "metrics.jsonl"), **overrides)


def test_sampling_this_process_gives_plausible_figures():
    sampler = ProcessSampler()
    first = sampler.sample(os.getpid())
    sum(i * i for i in range(200_000))  # some CPU between the two samples
    second = sampler.sample(os.getpid())

    assert first is not None and second is not None
    assert set(second) == FIELDS
    assert second["pid"] == os.getpid()
    assert second["rss_kb"] > 5_000  # a Python interpreter with pytest loaded
    assert second["uss_kb"] is None or 0 < second["uss_kb"] <= second["rss_kb"]
    assert first["cpu_pct"] is None  # no baseline yet: unknown, not a fake 0.0
    assert second["cpu_pct"] is not None and second["cpu_pct"] >= 0
    assert second["threads"] >= 1
    assert second["fds"] is None or second["fds"] >= 3
    assert second["open_files"] is None or second["open_files"] >= 0


def test_sampling_a_spawned_child_and_skipping_it_once_gone(spawn_child):
    child = spawn_child()
    figures = sample_process(child.pid)

    assert figures is not None
    assert figures["pid"] == child.pid
    assert figures["rss_kb"] > 1_000
    assert figures["threads"] >= 1

    assert sample_process(dead_pid(child)) is None


def test_monitor_skips_a_gone_pid_and_records_the_live_ones(tmp_path, spawn_child):
    monitor = Monitor(settings(tmp_path))
    gone = dead_pid(spawn_child())

    record = monitor.record(
        processes={"supervisor": os.getpid(), "worker-1": gone}, buffers={"live_tickers": 0}
    )
    monitor.close()

    assert list(record["processes"]) == ["supervisor"]
    lines = (tmp_path / "m" / "metrics.jsonl").read_text().splitlines()
    assert [json.loads(line) for line in lines] == [record]


def test_a_respawned_worker_appears_under_its_new_name(tmp_path, spawn_child):
    monitor = Monitor(settings(tmp_path))
    old = spawn_child()
    first = monitor.record(processes={"supervisor": os.getpid(), "worker-1": old.pid}, buffers={})

    old_pid = dead_pid(old)
    new = spawn_child()
    second = monitor.record(
        processes={"supervisor": os.getpid(), "worker-1": old_pid, "worker-2": new.pid},
        buffers={},
    )
    monitor.close()

    assert set(first["processes"]) == {"supervisor", "worker-1"}
    assert set(second["processes"]) == {"supervisor", "worker-2"}
    assert second["processes"]["worker-2"]["pid"] == new.pid


def test_record_schema_with_buffers_cycle_and_gateway_log(tmp_path):
    gateway_log = tmp_path / "gateway.log"
    monitor = Monitor(settings(tmp_path, gateway_log_path=str(gateway_log)))
    cycle = {"cycle_id": 3, "seconds": 0.4, "ok": 3, "failed": 0}

    record = monitor.record(
        processes={"supervisor": os.getpid()},
        buffers={"pending_requests": 2, "errors.2104": 1, "bad": float("nan")},
        cycle=cycle,
    )
    monitor.close()

    assert set(record) == {"ts", "mono", "processes", "buffers", "gateway_log", "cycle"}
    assert record["buffers"] == {"pending_requests": 2, "errors.2104": 1, "bad": None}
    assert record["gateway_log"] == {"output_exceeded": 0, "ebuffer_grown": 0}
    assert record["cycle"] == cycle
    assert abs(record["ts"] - time.time()) < 3600  # epoch seconds, not monotonic


def test_gateway_log_is_null_when_not_watched(tmp_path):
    monitor = Monitor(settings(tmp_path))
    assert monitor.record(processes={}, buffers={})["gateway_log"] is None
    monitor.close()


def test_rotation_keeps_at_most_keep_files(tmp_path):
    path = tmp_path / "deep" / "metrics.jsonl"
    writer = MetricsWriter(path, rotate_bytes=300, keep_files=2)

    for i in range(40):
        assert writer.write({"i": i, "pad": "x" * 50})
    writer.close()

    names = sorted(p.name for p in path.parent.iterdir())
    assert names == ["metrics.jsonl", "metrics.jsonl.1", "metrics.jsonl.2"]
    assert all(p.stat().st_size <= 300 for p in path.parent.iterdir())
    newest = [json.loads(line)["i"] for line in path.read_text().splitlines()]
    older = [
        json.loads(line)["i"] for line in (path.parent / "metrics.jsonl.1").read_text().splitlines()
    ]
    assert newest[-1] == 39
    assert older[-1] + 1 == newest[0]  # .1 holds the lines just before the current file


def test_writer_refuses_a_non_json_value_without_raising(tmp_path):
    writer = MetricsWriter(tmp_path / "m.jsonl", rotate_bytes=10_000, keep_files=1)
    assert writer.write({"x": object()}) is False
    assert writer.write({"x": 1}) is True
    writer.close()
    assert writer.write_errors == 1
    assert (tmp_path / "m.jsonl").read_text() == '{"x":1}\n'


EXCEEDED = "12:00:01 WARN Output exceeded limit (was: 100412), removed first half\n"
GROWN = "12:00:02 INFO EBuffer of client 7 has grown to 2048 KB\n"
QUIET = "12:00:03 INFO market data farm connection is OK\n"


def test_gateway_watcher_counts_only_lines_appended_after_it_started(tmp_path):
    path = tmp_path / "gw.log"
    path.write_text(EXCEEDED + GROWN)  # an earlier run's warnings
    watcher = GatewayLogWatcher(path)
    assert watcher.counts() == {"output_exceeded": 0, "ebuffer_grown": 0}

    with open(path, "a") as f:
        f.write(QUIET + EXCEEDED)
    assert watcher.counts() == {"output_exceeded": 1, "ebuffer_grown": 0}

    with open(path, "a") as f:
        f.write(GROWN + QUIET + GROWN[:20])  # the last line is still being written
    assert watcher.counts() == {"output_exceeded": 1, "ebuffer_grown": 1}

    with open(path, "a") as f:
        f.write(GROWN[20:])
    assert watcher.counts() == {"output_exceeded": 1, "ebuffer_grown": 2}
    assert watcher.counts() == {"output_exceeded": 1, "ebuffer_grown": 2}


def test_gateway_watcher_waits_for_the_file_and_survives_truncation_and_rotation(tmp_path):
    path = tmp_path / "gw.log"
    watcher = GatewayLogWatcher(path)
    assert watcher.counts() == {"output_exceeded": 0, "ebuffer_grown": 0}

    path.write_text(QUIET * 5 + EXCEEDED)  # created after watching began: read from the top
    assert watcher.counts()["output_exceeded"] == 1

    path.write_text(EXCEEDED)  # truncated and rewritten, shorter than before
    assert watcher.counts()["output_exceeded"] == 2

    path.rename(tmp_path / "gw.log.1")  # rotated: a new file with a new inode
    path.write_text(QUIET * 10 + GROWN)
    assert watcher.counts() == {"output_exceeded": 2, "ebuffer_grown": 1}


def fake_growth_monitor(tmp_path: Path, alert_mb_per_h: float, hours: float) -> Monitor:
    """A monitor fed a process growing 2 MB/h, sampled every minute on a fake clock."""
    now = [0.0]
    monitor = Monitor(
        settings(tmp_path, memory_growth_alert_mb_per_h=alert_mb_per_h), clock=lambda: now[0]
    )
    monitor._sampler.sample = lambda pid: {  # type: ignore[method-assign]
        "pid": pid,
        "rss_kb": 100_000 + int(now[0] / 3600 * 2048),
        "uss_kb": None,
        "cpu_pct": None,
        "threads": 1,
        "open_files": 0,
        "fds": 0,
    }
    for _ in range(int(hours * 60) + 1):
        monitor.record(processes={"worker-1": 4242}, buffers={})
        now[0] += 60
    monitor.close()
    return monitor


def test_memory_growth_slope_over_recorded_samples(tmp_path):
    monitor = fake_growth_monitor(tmp_path, alert_mb_per_h=50.0, hours=2)

    slope = monitor.memory_growth_kb_per_h("worker-1")
    assert slope is not None and abs(slope - 2048) < 5
    assert monitor.memory_growth_kb_per_h("worker-9") is None
    assert monitor.memory_alerts() == {}  # 2 MB/h is under 50 MB/h


def test_memory_alert_needs_the_threshold_and_a_long_enough_span(tmp_path):
    short = fake_growth_monitor(tmp_path / "a", alert_mb_per_h=1.0, hours=0.25)
    assert short.memory_alerts(min_span_s=1800) == {}  # 15 minutes: start-up, not a leak

    long = fake_growth_monitor(tmp_path / "b", alert_mb_per_h=1.0, hours=1)
    assert list(long.memory_alerts(min_span_s=1800)) == ["worker-1"]


def test_least_squares_slope():
    assert least_squares_slope([(0, 1), (1, 3), (2, 5)]) == pytest.approx(2.0)
    assert least_squares_slope([(0, 1)]) is None
    assert least_squares_slope([(1, 1), (1, 2)]) is None
