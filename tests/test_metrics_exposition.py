"""/metrics by the book (supervisor/observe/exposition.py): the exposition parses with
prometheus_client's own parser, counters are counters that only go up across cycles, the cycle
time is a histogram holding every cycle, the process collectors are there, and the Grafana
dashboard in configs/deploy/ asks only for metrics the bot exports."""

from __future__ import annotations

import json
import os
import re
import time
import urllib.request

import pytest
from prometheus_client.parser import text_string_to_metric_families

from supervisor.observe.exposition import CYCLE_BUCKETS_S, CycleTotals, Monotonic
from supervisor.observe.http_status import Status, StatusServer
from tests.conftest import REPO_ROOT

DASHBOARD = REPO_ROOT / "configs" / "deploy" / "grafana-dashboard.json"


def _families(server: StatusServer) -> dict[str, tuple[str, dict[str, float]]]:
    """name -> (type, {sample name{labels}: value}) as prometheus_client parses the text."""
    out = {}
    for family in text_string_to_metric_families(server.metrics().decode()):
        samples = {
            s.name + json.dumps(dict(sorted(s.labels.items())), sort_keys=True): s.value
            for s in family.samples
        }
        out[family.name] = (family.type, samples)
    return out


def _cycle(totals: CycleTotals, seconds: float, refused_by: str = "") -> CycleTotals:
    decisions = [(True, "ok")] + ([(False, refused_by)] if refused_by else [])
    return totals.add(seconds, decided=2, skipped=1, failed=1, decisions=decisions)


def _status(totals: CycleTotals, broker: dict[str, float]) -> Status:
    return Status(
        connected=True,
        cycles=totals.cycles,
        cycle_seconds=0.4,
        last_cycle_mono=time.monotonic(),
        day_pnl=-12.5,
        totals=totals,
        broker=broker,
        processes=(("supervisor", os.getpid()),),
    )


def test_counters_only_go_up_and_the_histogram_holds_every_cycle() -> None:
    server = StatusServer(0)
    totals, seen = CycleTotals(), []
    broker = {"messages_sent_total": 10.0, "errors.162": 1.0, "lines_in_use": 5.0}
    for n, seconds in enumerate([0.3, 4.0, 700.0, 0.1]):
        totals = _cycle(totals, seconds, refused_by="max_positions" if n % 2 else "")
        broker = {**broker, "messages_sent_total": 10.0 + 5 * n, "lines_in_use": 5.0 - n}
        if n == 2:  # the source starts again from zero (a new broker object)
            broker["messages_sent_total"] = 3.0
        server.publish(_status(totals, broker))
        seen.append(_families(server))
    counters = {name for name, (kind, _) in seen[-1].items() if kind == "counter"}
    assert {"ibkr_bot_cycles", "ibkr_bot_symbol_results", "ibkr_bot_intents"} <= counters
    assert {"ibkr_bot_broker_events", "ibkr_bot_ibkr_messages", "process_cpu_seconds"} <= counters
    for before, after in zip(seen, seen[1:], strict=False):
        for name in counters:
            for sample, value in before[name][1].items():
                assert after[name][1][sample] >= value, (name, sample)
    kind, cycles = seen[-1]["ibkr_bot_cycle_duration_seconds"]
    assert kind == "histogram"
    assert cycles["ibkr_bot_cycle_duration_seconds_count{}"] == 4
    assert cycles['ibkr_bot_cycle_duration_seconds_bucket{"le": "0.25"}'] == 1
    assert cycles['ibkr_bot_cycle_duration_seconds_bucket{"le": "600.0"}'] == 3
    assert cycles['ibkr_bot_cycle_duration_seconds_bucket{"le": "+Inf"}'] == 4
    assert cycles["ibkr_bot_cycle_duration_seconds_sum{}"] == pytest.approx(704.4)
    intents = seen[-1]["ibkr_bot_intents"][1]
    assert intents['ibkr_bot_intents_total{"outcome": "accepted", "rule": "ok"}'] == 4
    assert intents['ibkr_bot_intents_total{"outcome": "refused", "rule": "max_positions"}'] == 2
    sent = seen[-1]["ibkr_bot_broker_events"][1]
    # 15 counted before the source restarted, 25 since
    assert sent['ibkr_bot_broker_events_total{"stat": "messages_sent"}'] == 15 + 25
    assert seen[-1]["ibkr_bot_broker"][0] == "gauge"  # a level may go down: a gauge
    assert seen[-1]["ibkr_bot_broker"][1]['ibkr_bot_broker{"stat": "lines_in_use"}'] == 2


def test_the_process_collectors_and_rss_per_role_are_exported() -> None:
    families = _families_of(_status(_cycle(CycleTotals(), 1.0), {}))
    for name in ("process_resident_memory_bytes", "process_open_fds", "python_info"):
        assert name in families, name
    rss = families["ibkr_bot_process_rss_bytes"][1]
    assert rss['ibkr_bot_process_rss_bytes{"process": "supervisor", "role": "supervisor"}'] > 1e6


def _families_of(status: Status) -> dict[str, tuple[str, dict[str, float]]]:
    server = StatusServer(0)
    server.publish(status)
    return _families(server)


def test_buckets_cover_cycles_of_a_second_to_ten_minutes() -> None:
    assert CYCLE_BUCKETS_S[0] < 1 and CYCLE_BUCKETS_S[-1] == 600
    assert list(CYCLE_BUCKETS_S) == sorted(CYCLE_BUCKETS_S)
    assert CycleTotals().add(600.0, 0, 0, 0).cumulative_buckets()[-2] == ("600.0", 1.0)
    assert CycleTotals().add(601.0, 0, 0, 0).cumulative_buckets()[-2] == ("600.0", 0.0)


def test_monotonic_carries_a_restarted_total_on() -> None:
    totals = Monotonic()
    assert [totals.value("x", v) for v in (5, 7, 2, 4)] == [5, 7, 9, 11]


# PromQL words that are not metric names
_PROMQL_WORDS = {"by", "without", "on", "ignoring", "group_left", "group_right", "bool"}
_PROMQL_WORDS |= {"and", "or", "unless", "offset", "inf", "nan"}


def metric_names(expr: str) -> set[str]:
    """The metric names a PromQL query reads: label matchers, ranges, strings, grouping
    clauses and function names removed, what is left are the selectors' names."""
    text = re.sub(r'"(?:[^"\\]|\\.)*"', "", expr)
    text = re.sub(r"\{[^}]*\}|\[[^\]]*\]", " ", text)
    text = re.sub(r"\b(?:by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)", " ", text)
    words = re.findall(r"(?<![$\w.:])([A-Za-z_:][\w:]*)(?![\w:]|\s*\()", text)
    return {w for w in words if w.lower() not in _PROMQL_WORDS}


def _exported(families: dict[str, tuple[str, dict[str, float]]]) -> set[str]:
    names = set()
    for family, (_, samples) in families.items():
        names.add(family)
        names |= {sample.split("{", 1)[0] for sample in samples}
    return names


def test_metric_names_of_a_query() -> None:
    expr = (
        'histogram_quantile(0.95, sum by (le) (rate(a_bucket{job=~"$job"}[$__rate_interval])))'
        ' / ignoring(result) group_left sum(rate(b_total{stat="x y"}[5m])) * 60 + c'
    )
    assert metric_names(expr) == {"a_bucket", "b_total", "c"}


def test_every_grafana_panel_asks_only_for_exported_metrics() -> None:
    totals = _cycle(_cycle(CycleTotals(), 0.5, "max_positions"), 2.0)
    broker = {"messages_sent_total": 4.0, "pacing_waits_total": 1.0, "errors.162": 1.0}
    broker |= {"lines_in_use": 3.0, "live_tickers": 2.0, "pending_requests": 0.0}
    status = _status(totals, broker)
    server = StatusServer(0)
    server.publish(status)
    port = server.start()
    try:  # what a scraper gets over HTTP, not only what the function returns
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as answer:
            text = answer.read().decode()
    finally:
        server.stop()
    exported = _exported(
        {
            f.name: (f.type, {s.name: s.value for s in f.samples})
            for f in text_string_to_metric_families(text)
        }
    )
    dashboard = json.loads(DASHBOARD.read_text())
    panels = dashboard["panels"]
    assert len(panels) >= 10
    for panel in panels:
        assert panel["targets"], panel["title"]
        for target in panel["targets"]:
            names = metric_names(target["expr"])
            assert names, (panel["title"], target["expr"])
            assert names <= exported, (panel["title"], names - exported)
    titles = " ".join(p["title"].lower() for p in panels)
    for needed in ("cycle time", "symbols", "intents", "messages", "rss", "connection", "kill"):
        assert needed in titles, needed
