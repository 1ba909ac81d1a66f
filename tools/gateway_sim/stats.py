"""Counters of what the simulated gateway saw: messages, peaks, violations, lines, orders.

Mutated only on the sim's event loop; ``snapshot()`` may be called from any thread (a lock
guards the copy), so a test can assert "zero violations" while the sim keeps running.
"""

from __future__ import annotations

import json
import os
import threading
import time
from collections import Counter
from pathlib import Path
from typing import Any

VIOLATION_CODES = frozenset({100, 101, 102, 103, 162, 322, 326, 414})
BY_SECOND_KEPT = 4 * 3600


class Stats:
    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.started = time.monotonic()
        self.messages_by_type: Counter[int] = Counter()
        self.messages_total = 0
        self.peak_messages_per_s = 0
        self.by_second: Counter[int] = Counter()
        self.violations: Counter[int] = Counter()
        self.errors_sent: Counter[int] = Counter()
        self.lines_open = 0
        self.lines_peak = 0
        self.orders_received = 0
        self.what_if_orders = 0
        self.fills = 0
        self.orders_expired = 0  # DAY orders cancelled at their session's close
        self.options_exercised = 0  # option positions exercised or assigned at expiry
        self.options_expired = 0  # ... and expired worthless
        self.connections_total = 0
        self.connections_open = 0
        self.clients_rejected = 0
        self.snapshots = 0
        self.streams = 0
        self.historical_requests = 0
        self.bars_sent = 0
        self.messages_sent = 0
        self.messages_paced = 0  # +PACEAPI: handled late instead of a violation
        self.paced_delay_max_s = 0.0

    def message_in(self, msg_id: int, window_count: int, wall_s: float | None = None) -> None:
        """One message from a client; ``wall_s``: when it arrived (epoch seconds)."""
        second = int(time.time() if wall_s is None else wall_s)
        with self._lock:
            self.messages_by_type[msg_id] += 1
            self.messages_total += 1
            self.peak_messages_per_s = max(self.peak_messages_per_s, window_count)
            self.by_second[second] += 1
            if len(self.by_second) > BY_SECOND_KEPT:  # the oldest second goes
                del self.by_second[min(self.by_second)]

    def paced(self, delay_s: float) -> None:
        with self._lock:
            self.messages_paced += 1
            self.paced_delay_max_s = max(self.paced_delay_max_s, delay_s)

    def error_sent(self, code: int) -> None:
        with self._lock:
            self.errors_sent[code] += 1
            if code in VIOLATION_CODES:
                self.violations[code] += 1

    def lines(self, open_now: int) -> None:
        with self._lock:
            self.lines_open = open_now
            self.lines_peak = max(self.lines_peak, open_now)

    def bump(self, name: str, amount: int = 1) -> None:
        with self._lock:
            setattr(self, name, getattr(self, name) + amount)

    def snapshot(self) -> dict[str, Any]:
        with self._lock:
            return {
                "uptime_s": round(time.monotonic() - self.started, 3),
                "connections_total": self.connections_total,
                "connections_open": self.connections_open,
                "clients_rejected": self.clients_rejected,
                "messages_total": self.messages_total,
                "messages_by_type": {str(k): v for k, v in sorted(self.messages_by_type.items())},
                "peak_messages_per_s": self.peak_messages_per_s,
                # messages received in each epoch second (the last BY_SECOND_KEPT): rates
                "messages_by_second": {str(k): v for k, v in sorted(self.by_second.items())},
                "messages_sent": self.messages_sent,
                "violations": {str(k): v for k, v in sorted(self.violations.items())},
                "violations_total": sum(self.violations.values()),
                # over the rate from a +PACEAPI client: handled late, not refused
                "messages_paced": self.messages_paced,
                "paced_delay_max_s": round(self.paced_delay_max_s, 3),
                "errors_sent": {str(k): v for k, v in sorted(self.errors_sent.items())},
                "market_data_lines_open": self.lines_open,
                "market_data_lines_peak": self.lines_peak,
                "snapshots": self.snapshots,
                "streams": self.streams,
                "historical_requests": self.historical_requests,
                "bars_sent": self.bars_sent,
                "orders_received": self.orders_received,
                "what_if_orders": self.what_if_orders,
                "fills": self.fills,
                "orders_expired": self.orders_expired,
                "options_exercised": self.options_exercised,
                "options_expired": self.options_expired,
            }


def write_stats_file(path: str | Path, stats: dict[str, Any]) -> None:
    """Write atomically (temp file + rename) so a reader never sees half a file."""
    target = Path(path)
    tmp = target.with_name(f".{target.name}.{os.getpid()}.tmp")
    tmp.write_text(json.dumps(stats, indent=2, sort_keys=True) + "\n")
    tmp.replace(target)
