"""What ``chaos`` proves at the end: the figures of the run, each held against its limit
(the independent records they come from: chaos_records.py).

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
    except sqlite3.DatabaseError:  # no tables yet (the very first run), or a damaged file
        return set()
    finally:
        db.close()


def journal_findings(journal: Path) -> dict[str, Any]:
    """Integrity, and intents decided or ordered more than once."""
    db = sqlite3.connect(f"{journal.resolve().as_uri()}?mode=ro", uri=True, timeout=10)
    try:
        try:
            integrity = db.execute("PRAGMA integrity_check").fetchone()[0]
        except sqlite3.DatabaseError as exc:  # damaged past what the check can read
            return {
                "integrity": f"cannot be read: {exc}",
                "duplicates": 0,
                "intents": 0,
                "journal_cycles": 0,
            }
        if not db.execute("SELECT 1 FROM sqlite_master WHERE name = 'decisions'").fetchone():
            return {
                "integrity": integrity,
                "duplicates": 0,
                "intents": 0,
                "journal_cycles": 0,
            }  # taken away before its tables were made
        twice_accepted = db.execute(
            "SELECT COUNT(*) FROM (SELECT intent_id FROM decisions WHERE accepted = 1 "
            "GROUP BY intent_id HAVING COUNT(*) > 1)"
        ).fetchone()[0]
        twice_ordered = db.execute(
            "SELECT COUNT(*) FROM (SELECT intent_id FROM orders GROUP BY intent_id "
            "HAVING COUNT(*) > 1)"
        ).fetchone()[0]
        intents = db.execute("SELECT COUNT(*) FROM intents").fetchone()[0]
        cycles = db.execute("SELECT COUNT(*) FROM cycles WHERE ended_ts IS NOT NULL").fetchone()[0]
    finally:
        db.close()
    return {
        "integrity": integrity,
        "duplicates": twice_accepted + twice_ordered,
        "intents": intents,
        "journal_cycles": cycles,
    }


RECOVERY_LIMIT_S = 60.0  # a fault is recovered from once every symbol decides again


@dataclass
class Recovery:
    kind: str
    at_cycle: int
    seconds: float | None  # to the first cycle every symbol decided; None: never recovered


@dataclass
class ChaosReport:
    planned_cycles: int
    seed: int
    live: bool = False
    without: list[str] = field(default_factory=list)  # fault kinds left out of the plan
    cycles: int = 0
    healthy_cycles: int = 0  # every symbol decided (none failed, none skipped)
    hung_cycles: int = 0
    crashes: list[str] = field(default_factory=list)
    findings: list[str] = field(default_factory=list)  # a fault the bot did not handle
    integrity: str = "not checked"
    rows_lost: int = 0
    duplicates: int = 0
    logged_not_journaled: list[str] = field(default_factory=list)
    journaled_not_logged: list[str] = field(default_factory=list)
    unlogged_excused: int = 0  # journaled in the instant before a SIGKILL: its line may be lost
    broker_brackets: int = 0
    broker_duplicates: int = 0
    duplicate_refs: dict[str, int] = field(default_factory=dict)
    orphans: int = 0
    rss_growth_mb: dict[str, float] = field(default_factory=dict)  # per role, whole run
    max_rss_growth_mb: float = 64.0
    recovery_limit_s: float = RECOVERY_LIMIT_S
    faults: dict[str, int] = field(default_factory=dict)  # injected, by kind
    recoveries: list[Recovery] = field(default_factory=list)
    flood_connections: int = 0  # the most the status port took at once in a flood
    heartbeats: int = 0  # pings the heartbeat channel got beside the hanging webhook
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
        found += [f"crash: {c}" for c in self.crashes] + self.findings
        if self.integrity != "ok":
            found.append(f"journal integrity_check: {self.integrity}")
        if self.rows_lost:
            found.append(f"{self.rows_lost} journaled intent(s) lost")
        if self.duplicates:
            found.append(f"{self.duplicates} intent(s) decided or ordered twice")
        if self.logged_not_journaled:
            found.append(
                f"{len(self.logged_not_journaled)} accepted decision(s) in the log "
                f"and in no journal: {', '.join(self.logged_not_journaled[:3])}"
            )
        if self.journaled_not_logged:
            found.append(
                f"{len(self.journaled_not_logged)} journaled intent(s) the log never "
                f"accepted: {', '.join(self.journaled_not_logged[:3])}"
            )
        if self.broker_duplicates:
            found.append(
                f"{self.broker_duplicates} orderRef(s) reached the gateway as more "
                f"than one bracket: {', '.join(list(self.duplicate_refs)[:3])}"
            )
        if self.orphans:
            found.append(f"{self.orphans} orphan process(es)")
        found += [
            f"{role} RSS grew {mb:.1f} MB over the run > {self.max_rss_growth_mb:g} MB"
            for role, mb in self.rss_growth_mb.items()
            if mb > self.max_rss_growth_mb
        ]
        found += [
            f"no recovery after {r.kind} at cycle {r.at_cycle}"
            for r in self.recoveries
            if r.seconds is None
        ]
        found += [
            f"recovery after {r.kind} at cycle {r.at_cycle} took {r.seconds:.1f} s > "
            f"{self.recovery_limit_s:g} s"
            for r in self.recoveries
            if r.seconds is not None and r.seconds > self.recovery_limit_s
        ]
        if self.faults.get("alert_hang") and self.wall_s > 60 and not self.heartbeats:
            found.append("no heartbeat went out beside the hanging webhook")
        return found

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["problems"] = self.problems()
        data["verdict"] = "PASS" if not data["problems"] else "FAIL"
        return data

    def lines(self) -> list[str]:
        by_kind: dict[str, list[float]] = {}
        for r in self.recoveries:
            if r.seconds is not None:
                by_kind.setdefault(r.kind, []).append(r.seconds)
        faults = ", ".join(f"{k} {n}" for k, n in sorted(self.faults.items()))
        rss = ", ".join(f"{role} {mb:.1f}" for role, mb in self.rss_growth_mb.items())
        out = [
            f"chaos{' --live' if self.live else ''}: {self.cycles}/{self.planned_cycles} "
            f"cycles ({self.healthy_cycles} with every symbol decided) in {self.wall_s:.0f} s "
            f"(seed {self.seed}), {self.bot_runs} bot runs, {self.gateway_restarts} gateway "
            f"restarts; faults: {faults or 'none'}"
            + (f" (left out: {', '.join(self.without)})" if self.without else ""),
            f"hung cycles {self.hung_cycles}, crashes {len(self.crashes)}, journal "
            f"integrity {self.integrity}, rows lost {self.rows_lost}, duplicates "
            f"{self.duplicates}, orphans {self.orphans}, intents {self.intents}",
            f"log vs journals: {len(self.logged_not_journaled)} logged only, "
            f"{len(self.journaled_not_logged)} journaled only ({self.unlogged_excused} "
            f"excused by a SIGKILL); gateway: {self.broker_brackets} brackets, "
            f"{self.broker_duplicates} orderRefs twice; heartbeats {self.heartbeats}",
            f"RSS growth over the run (MB): {rss or 'not measured'} (limit "
            f"{self.max_rss_growth_mb:g} MB per role)",
        ]
        for kind, seconds in sorted(by_kind.items()):
            out.append(
                f"  recovery after {kind}: n {len(seconds)}, max {max(seconds):.1f} s, "
                f"mean {sum(seconds) / len(seconds):.1f} s"
            )
        problems = self.problems()
        out.append(
            "verdict: PASS" if not problems else "verdict: FAIL (" + "; ".join(problems) + ")"
        )
        return out
