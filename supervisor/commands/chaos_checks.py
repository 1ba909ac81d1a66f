"""What ``chaos`` proves at the end: the figures of the run, each held against its limit.

The journal is read as a separate, read-only SQLite connection (never through the bot's
Journal class): what a user opening the file after the crash would find.
"""

from __future__ import annotations

import sqlite3
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any


def journaled_intents(journal: Path) -> set[str]:
    """Intent ids committed right now (taken before each kill: none may go missing)."""
    if not journal.exists():
        return set()
    db = sqlite3.connect(f"{journal.resolve().as_uri()}?mode=ro", uri=True, timeout=10)
    try:
        return {row[0] for row in db.execute("SELECT intent_id FROM intents")}
    except sqlite3.OperationalError:  # the very first run has not made its tables yet
        return set()
    finally:
        db.close()


def journal_findings(journal: Path) -> dict[str, Any]:
    """Integrity, and intents decided or ordered more than once."""
    db = sqlite3.connect(f"{journal.resolve().as_uri()}?mode=ro", uri=True, timeout=10)
    try:
        integrity = db.execute("PRAGMA integrity_check").fetchone()[0]
        twice_accepted = db.execute(
            "SELECT COUNT(*) FROM (SELECT intent_id FROM decisions WHERE accepted = 1 "
            "GROUP BY intent_id HAVING COUNT(*) > 1)").fetchone()[0]
        twice_ordered = db.execute(
            "SELECT COUNT(*) FROM (SELECT intent_id FROM orders GROUP BY intent_id "
            "HAVING COUNT(*) > 1)").fetchone()[0]
        intents = db.execute("SELECT COUNT(*) FROM intents").fetchone()[0]
        cycles = db.execute("SELECT COUNT(*) FROM cycles WHERE ended_ts IS NOT NULL"
                            ).fetchone()[0]
    finally:
        db.close()
    return {"integrity": integrity, "duplicates": twice_accepted + twice_ordered,
            "intents": intents, "journal_cycles": cycles}


@dataclass
class Recovery:
    kind: str
    at_cycle: int
    seconds: float | None  # to the next cycle line; None: never recovered


@dataclass
class ChaosReport:
    planned_cycles: int
    seed: int
    cycles: int = 0
    healthy_cycles: int = 0  # a symbol decided (not every one failed or skipped)
    hung_cycles: int = 0
    crashes: list[str] = field(default_factory=list)
    integrity: str = "not checked"
    rows_lost: int = 0
    duplicates: int = 0
    orphans: int = 0
    rss_growth_mb: float = 0.0
    max_rss_growth_mb: float = 64.0
    recoveries: list[Recovery] = field(default_factory=list)
    intents: int = 0
    bot_runs: int = 0
    gateway_restarts: int = 0
    wall_s: float = 0.0

    def problems(self) -> list[str]:
        found = []
        if self.cycles < self.planned_cycles:
            found.append(f"{self.cycles} of {self.planned_cycles} cycles completed")
        if self.hung_cycles:
            found.append(f"{self.hung_cycles} hung cycle(s)")
        found += [f"crash: {c}" for c in self.crashes]
        if self.integrity != "ok":
            found.append(f"journal integrity_check: {self.integrity}")
        if self.rows_lost:
            found.append(f"{self.rows_lost} journaled intent(s) lost")
        if self.duplicates:
            found.append(f"{self.duplicates} intent(s) decided or ordered twice")
        if self.orphans:
            found.append(f"{self.orphans} orphan process(es)")
        if self.rss_growth_mb > self.max_rss_growth_mb:
            found.append(f"supervisor RSS grew {self.rss_growth_mb:.1f} MB > "
                         f"{self.max_rss_growth_mb:g} MB")
        found += [f"no recovery after {r.kind} at cycle {r.at_cycle}"
                  for r in self.recoveries if r.seconds is None]
        return found

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["problems"] = self.problems()
        data["verdict"] = "PASS" if not data["problems"] else "FAIL"
        return data

    def lines(self) -> list[str]:
        times = [r.seconds for r in self.recoveries if r.seconds is not None]
        by_kind: dict[str, list[float]] = {}
        for r in self.recoveries:
            if r.seconds is not None:
                by_kind.setdefault(r.kind, []).append(r.seconds)
        out = [
            f"chaos: {self.cycles}/{self.planned_cycles} cycles ({self.healthy_cycles} healthy) "
            f"in {self.wall_s:.0f} s "
            f"(seed {self.seed}), {self.bot_runs} bot runs, {self.gateway_restarts} gateway "
            f"restarts, {len(self.recoveries)} faults injected",
            f"hung cycles {self.hung_cycles}, crashes {len(self.crashes)}, journal "
            f"integrity {self.integrity}, rows lost {self.rows_lost}, duplicates "
            f"{self.duplicates}, orphans {self.orphans}, intents {self.intents}",
            f"supervisor RSS growth {self.rss_growth_mb:.1f} MB (limit "
            f"{self.max_rss_growth_mb:g} MB)",
        ]
        for kind, seconds in sorted(by_kind.items()):
            out.append(f"  recovery after {kind}: n {len(seconds)}, max {max(seconds):.1f} s, "
                       f"mean {sum(seconds) / len(seconds):.1f} s")
        if not times and self.recoveries:
            out.append("  no fault was recovered from")
        problems = self.problems()
        out.append("verdict: PASS" if not problems else "verdict: FAIL (" + "; ".join(
            problems) + ")")
        return out
