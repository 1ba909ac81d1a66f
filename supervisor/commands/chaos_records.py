"""The independent records ``chaos`` holds the bot to, and the pure verdicts on them.

JSON log (bot.jsonl*)     accepted decisions, as the bot said them (``logged_accepted``)
journals                  the file at the path now, and each one a fault took away
                          (``journal_intents``: what their ``intents`` tables hold)
simulator's order log     every placeOrder message that reached the gateway, one JSON
                          line each, written as it arrives (survives a SIGKILL of it)

record_mismatch(logged, journaled, excused) -> (logged, not journaled), (journaled, not
                          logged and not excused)
broker_duplicates(orders) -> orderRefs that reached the gateway as more than one bracket
all_decided(ok, n)        a cycle in which every symbol decided
rss_growth_mb(samples)    per role, over the whole run: each process's growth after its
                          warm-up, summed over the processes of the role
"""

from __future__ import annotations

import json
import sqlite3
from collections import defaultdict
from collections.abc import Iterable
from pathlib import Path
from typing import Any

# events whose line carries the decision as taken (accepted), whatever became of the order
DECISION_EVENTS = frozenset({"execution", "order_rejected", "execution_error"})


def all_decided(ok: int, n: int) -> bool:
    """Healthy: every symbol of the cycle decided (none failed, none skipped)."""
    return n > 0 and ok == n


def record_mismatch(
    logged: set[str], journaled: set[str], excused: set[str]
) -> tuple[list[str], list[str]]:
    """Accepted decisions the log has and no journal has; and intents a journal has that the
    log never said (``excused``: journaled in the instant before a SIGKILL, whose log line
    the kill may have taken)."""
    return sorted(logged - journaled), sorted(journaled - logged - excused)


def broker_duplicates(orders: Iterable[dict[str, Any]]) -> dict[str, int]:
    """orderRef -> brackets, for every ref the gateway received as more than one bracket.
    A bracket is its entry: a BUY without a parent; the same order id sent again (a
    modification) is the same order, and a restarted gateway (``pid``) numbers anew."""
    entries: dict[str, set[tuple[Any, ...]]] = defaultdict(set)
    for o in orders:
        if o.get("parentId") or str(o.get("action", "")).upper() != "BUY":
            continue
        entries[str(o.get("orderRef", ""))].add(
            (o.get("pid"), o.get("client_id"), o.get("order_id"))
        )
    return {ref: len(keys) for ref, keys in entries.items() if ref and len(keys) > 1}


def rss_growth_mb(
    samples: dict[tuple[str, int], list[tuple[float, float]]], warmup_s: float = 20.0
) -> dict[str, float]:
    """``samples[(role, pid)] = [(seconds since the process was first seen, rss MB)]`` ->
    growth per role: each process's last figure minus its first after ``warmup_s`` (the
    median of three at each end, so one sample's noise is not growth), summed over the
    role's processes. A leak of 1 MB per cycle shows as ~1 MB per cycle however often the
    process was restarted."""
    growth: dict[str, float] = defaultdict(float)
    for (role, _pid), series in samples.items():
        growth[role] += 0.0
        steady = [mb for t, mb in series if t >= warmup_s]
        if len(steady) >= 6:
            growth[role] += _median(steady[-3:]) - _median(steady[:3])
    return {role: round(mb, 1) + 0.0 for role, mb in sorted(growth.items())}  # never -0.0


def _median(values: list[float]) -> float:
    return sorted(values)[len(values) // 2]


# --- readers --------------------------------------------------------------------------------


def logged_accepted(log: Path) -> set[str]:
    """Intent ids of the accepted decisions in the JSON log and its rotated files."""
    found: set[str] = set()
    for path in [log, *sorted(log.parent.glob(f"{log.name}.*"))]:
        if not path.exists():
            continue
        with path.open(encoding="utf-8", errors="replace") as lines:
            for line in lines:
                if '"intent_id"' not in line:
                    continue
                try:
                    record = json.loads(line)
                except ValueError:
                    continue  # a line cut by a SIGKILL
                if record.get("event") in DECISION_EVENTS and record.get("accepted") is True:
                    found.add(str(record["intent_id"]))
    return found


def journal_intents(journals: Iterable[Path]) -> set[str]:
    """Intents the bot journaled as its own decision (not rebuilt from the broker's orders:
    rule ``adopted``), over every journal file."""
    sql = (
        "SELECT DISTINCT i.intent_id FROM intents i JOIN decisions d USING (intent_id) "
        "WHERE d.rule != 'adopted'"
    )
    return {str(row[0]) for path in journals for row in _query(path, sql, ())}


def intents_decided_between(journals: Iterable[Path], start: float, end: float) -> set[str]:
    sql = "SELECT DISTINCT intent_id FROM decisions WHERE rule != 'adopted' AND ts >= ? AND ts <= ?"
    return {str(r[0]) for path in journals for r in _query(path, sql, (start, end))}


def gateway_orders(order_log: Path) -> list[dict[str, Any]]:
    if not order_log.exists():
        return []
    orders = []
    for line in order_log.read_text(encoding="utf-8", errors="replace").splitlines():
        try:
            orders.append(json.loads(line))
        except ValueError:
            continue  # cut by a SIGKILL of the simulator
    return orders


def _query(path: Path, sql: str, args: tuple[Any, ...]) -> list[tuple[Any, ...]]:
    if not path.exists():
        return []
    db = sqlite3.connect(f"{path.resolve().as_uri()}?mode=ro", uri=True, timeout=10)
    try:
        return db.execute(sql, args).fetchall()
    except sqlite3.DatabaseError:  # a journal whose tables were never made, or damaged
        return []
    finally:
        db.close()
