"""/metrics by the book: counters as counters, the cycle time as a histogram, levels as gauges.

    loop, after each cycle --CycleTotals.add(...)--> StatusFeed.totals (a new frozen value)
    loop, every second     --publish(Status with the totals)--> StatusServer
    scrape --StatusCollector.collect(Status)--> the ibkr_bot_* families
           + prometheus_client's ProcessCollector (process_*), PlatformCollector
             (python_info) and GCCollector (python_gc_*) --> generate_latest

The totals are counted on the loop, once per cycle, and handed over whole: a scrape every
15 s still sees every cycle of a 0.2 s loop in the histogram. Counters come from running
totals the bot keeps anyway (cycles, the gate's refusals, the broker's ``*_total`` and
``errors.<code>`` counts); should a source ever start again from zero (a broker object
replaced), ``Monotonic`` carries the old total on, so a counter never goes down within a
process (Prometheus reads a drop as a restart and would count the whole total again).
"""

from __future__ import annotations

import math
import os
import threading
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING

from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)
from prometheus_client.utils import floatToGoString

if TYPE_CHECKING:
    from supervisor.observe.http_status import Status

# Upper bounds of the cycle-time histogram, seconds: a cycle takes from under a second (a few
# symbols, the simulator) to minutes (hundreds of symbols paced by IBKR); 10 min is the
# /healthz staleness limit, past it is +Inf.
CYCLE_BUCKETS_S = (0.25, 0.5, 1.0, 2.0, 5.0, 10.0, 20.0, 30.0, 60.0, 120.0, 300.0, 600.0)
SYMBOL_RESULTS = ("decided", "skipped", "failed")  # a partition of a cycle's symbols


@dataclass(frozen=True)
class CycleTotals:
    """Every cycle of the run so far, counted: replaced whole by ``add`` (never mutated), so
    the server thread reads a consistent value while the loop counts the next cycle."""

    cycles: int = 0
    seconds_sum: float = 0.0
    buckets: tuple[int, ...] = (0,) * (len(CYCLE_BUCKETS_S) + 1)  # per bucket, last: +Inf
    symbols: tuple[int, ...] = (0,) * len(SYMBOL_RESULTS)
    intents: tuple[tuple[str, str, int], ...] = ()  # (accepted|refused, rule, count), sorted

    def add(
        self,
        seconds: float,
        decided: int,
        skipped: int,
        failed: int,
        decisions: Iterable[tuple[bool, str]] = (),
    ) -> CycleTotals:
        """These totals and one more cycle: its time, its symbols, its risk decisions
        (accepted or not, and the rule: ``ok`` when accepted)."""
        slot = next((i for i, b in enumerate(CYCLE_BUCKETS_S) if seconds <= b), -1)
        buckets = list(self.buckets)
        buckets[slot] += 1
        intents = {(o, r): n for o, r, n in self.intents}
        for accepted, rule in decisions:
            key = ("accepted" if accepted else "refused", rule)
            intents[key] = intents.get(key, 0) + 1
        counts = (decided, skipped, failed)
        return replace(
            self,
            cycles=self.cycles + 1,
            seconds_sum=self.seconds_sum + max(seconds, 0.0),
            buckets=tuple(buckets),
            symbols=tuple(a + b for a, b in zip(self.symbols, counts, strict=True)),
            intents=tuple(sorted((o, r, n) for (o, r), n in intents.items())),
        )

    def cumulative_buckets(self) -> list[tuple[str, float]]:
        """Prometheus's ``le`` buckets: each counts the cycles at or under its bound."""
        bounds = [floatToGoString(b) for b in CYCLE_BUCKETS_S] + ["+Inf"]  # as Histogram
        running, out = 0, []
        for bound, count in zip(bounds, self.buckets, strict=True):
            running += count
            out.append((bound, float(running)))
        return out


def is_counter_stat(name: str) -> bool:
    """A broker measure that only grows (the soak report's convention: observe/soak.py)."""
    return name.endswith("_total") or name.startswith(("errors.", "warnings."))


class Monotonic:
    """Running totals that never go down: a source that starts again from zero (a new broker
    object) adds to what was counted before instead of replacing it."""

    def __init__(self) -> None:
        self._last: dict[str, float] = {}
        self._base: dict[str, float] = {}
        self._lock = threading.Lock()  # scrapes are served on a thread each

    def value(self, key: str, raw: float) -> float:
        with self._lock:
            if raw < self._last.get(key, 0.0):
                self._base[key] = self._base.get(key, 0.0) + self._last[key]
            self._last[key] = raw
            return self._base.get(key, 0.0) + raw


class StatusCollector:
    """The bot's own families, built from the last published Status at each scrape."""

    def __init__(
        self,
        status: Callable[[], Status],
        gate_counts: Callable[[], tuple[int, int]],
        rss_bytes: Callable[[int], float | None],
        age_s: Callable[[Status], float | None],
    ) -> None:
        self.status = status
        self.gate_counts = gate_counts  # (refused, dropped) by the status server's gate
        self.rss_bytes = rss_bytes  # RSS of a pid, None when gone
        self.age_s = age_s
        self.monotonic = Monotonic()

    def collect(self) -> Iterator[Metric]:
        status = self.status()
        yield from _gauges(status, self.age_s(status))
        yield from _cycle_families(status.totals)
        yield from self._counters(status)
        yield from self._broker(status)
        yield from self._processes(status)

    def _counters(self, status: Status) -> Iterator[Metric]:
        refused, dropped = self.gate_counts()
        for name, text, value in (
            ("ibkr_bot_cycles", "cycles completed in this run", status.cycles),
            (
                "ibkr_bot_http_refused",
                "status connections refused: over the cap, or shed for want of descriptors",
                refused,
            ),
            ("ibkr_bot_http_dropped", "status clients that went away or stalled", dropped),
        ):
            yield CounterMetricFamily(name, text, value=self.monotonic.value(name, value))

    def _broker(self, status: Status) -> Iterator[Metric]:
        levels = GaugeMetricFamily(
            "ibkr_bot_broker",
            "the broker adapter's levels (lines in use, live tickers, pending requests …)",
            labels=["stat"],
        )
        events = CounterMetricFamily(
            "ibkr_bot_broker_events",
            "the broker adapter's running totals (messages sent, pacing waits, reconnects …)",
            labels=["stat"],
        )
        codes = CounterMetricFamily(
            "ibkr_bot_ibkr_messages",
            "IBKR error and warning messages received, by code",
            labels=["kind", "code"],
        )
        for name, value in sorted(status.broker.items()):
            if not math.isfinite(value):
                continue
            if name.startswith(("errors.", "warnings.")):
                kind, _, code = name.partition(".")
                codes.add_metric([kind.rstrip("s"), code], self.monotonic.value(name, value))
            elif is_counter_stat(name):
                stat = name.removesuffix("_total")
                events.add_metric([stat], self.monotonic.value(name, value))
            else:
                levels.add_metric([name], value)
        yield from (levels, events, codes)

    def _processes(self, status: Status) -> Iterator[Metric]:
        own = self.rss_bytes(os.getpid())
        if own is not None:  # kept beside the per-role family: its documented name
            yield GaugeMetricFamily("ibkr_bot_rss_bytes", "the supervisor's resident memory", own)
        rss = GaugeMetricFamily(
            "ibkr_bot_process_rss_bytes",
            "resident memory of the supervisor and each worker",
            labels=["role", "process"],
        )
        for name, pid in status.processes:
            value = self.rss_bytes(pid)
            if value is not None:
                role = "supervisor" if name == "supervisor" else "worker"
                rss.add_metric([role, name], value)
        yield rss


def _gauges(status: Status, age_s: float | None) -> Iterator[Metric]:
    for name, text, value in (
        ("up", "1 while connected to the broker", float(status.connected)),
        ("market_open", "1 while the first symbol's session is open", float(status.market_open)),
        ("kill_switch", "1 once the daily loss limit halted new entries", float(status.halted)),
        ("cycle_seconds", "the last cycle's duration", status.cycle_seconds),
        ("last_cycle_age_seconds", "seconds since the last cycle ended", age_s),
        ("symbols_ok", "symbols that reported in the last cycle", float(status.symbols_ok)),
        ("symbols_failed", "symbols that failed in the last cycle", float(status.symbols_failed)),
        (
            "symbols_skipped",
            "symbols skipped (no decision) in the last cycle",
            float(status.symbols_skipped),
        ),
        ("open_positions", "positions open or pending in the journal", status.open_positions),
        ("day_pnl", "today's P&L in the account currency", status.day_pnl),
    ):
        if value is not None and math.isfinite(value):
            yield GaugeMetricFamily(f"ibkr_bot_{name}", text, value=float(value))


def _cycle_families(totals: CycleTotals) -> Iterator[Metric]:
    yield HistogramMetricFamily(
        "ibkr_bot_cycle_duration_seconds",
        "how long each cycle took, from its start to its journaled end",
        buckets=totals.cumulative_buckets(),
        sum_value=totals.seconds_sum,
    )
    symbols = CounterMetricFamily(
        "ibkr_bot_symbol_results",
        "symbols of every cycle by result: decided, skipped (no decision), failed",
        labels=["result"],
    )
    for result, count in zip(SYMBOL_RESULTS, totals.symbols, strict=True):
        symbols.add_metric([result], float(count))
    yield symbols
    intents = CounterMetricFamily(
        "ibkr_bot_intents",
        "risk decisions on trade intents: accepted (rule ok) or refused, by rule",
        labels=["outcome", "rule"],
    )
    for outcome, rule, count in totals.intents:
        intents.add_metric([outcome, rule], float(count))
    yield intents
