"""The end of a ``chaos`` run: every record read, every figure put into the report.

journals    the file at the path and each one a fault took away (linked aside): integrity,
            decided or ordered twice, intents lost since a snapshot before a kill
JSON log    its accepted decisions against the journals' intents, both ways
gateway     the simulator's order log (sim-orders.jsonl): brackets, orderRefs sent twice
memory      RSS growth per role over the whole run
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from supervisor.commands.chaos_checks import ChaosReport, journal_findings, journaled_intents
from supervisor.commands.chaos_faults import Flood
from supervisor.commands.chaos_procs import ORDER_LOG
from supervisor.commands.chaos_records import (
    broker_duplicates,
    gateway_orders,
    intents_decided_between,
    journal_intents,
    logged_accepted,
    record_mismatch,
    rss_growth_mb,
)


@dataclass
class Active:
    """A fault still going on (a freeze, a flood) or awaited (a hang cue to be taken, a
    journal fault to be noticed); ``until``: when it ends, or the waiting gives up."""

    kind: str
    until: float
    seen: int = 0  # the bot's stderr read up to here (what it says after the fault)
    aside: Path | None = None  # the journal file taken away, linked here
    flood: Flood | None = None


def judge(
    report: ChaosReport,
    out: Path,
    journals: list[Path],
    kept: set[str],
    kill_windows: list[tuple[float, float]],
    samples: dict[tuple[str, int], list[tuple[float, float]]],
) -> None:
    present = [j for j in journals if j.exists()]
    _journals(report, present, kept)
    logged = logged_accepted(out / "bot.jsonl")
    excused: set[str] = set()
    for start, end in kill_windows:
        excused |= intents_decided_between(present, start, end)
    journaled = journal_intents(present)
    report.logged_not_journaled, report.journaled_not_logged = record_mismatch(
        logged, journaled, excused
    )
    report.unlogged_excused = len((journaled - logged) & excused)
    orders = gateway_orders(out / ORDER_LOG)
    report.broker_brackets = len(
        {
            (o.get("pid"), o.get("client_id"), o.get("order_id"))
            for o in orders
            if not o.get("parentId") and str(o.get("action", "")).upper() == "BUY"
        }
    )
    report.duplicate_refs = broker_duplicates(orders)
    report.broker_duplicates = len(report.duplicate_refs)
    report.rss_growth_mb = rss_growth_mb(samples)


def _journals(report: ChaosReport, journals: list[Path], kept: set[str]) -> None:
    verdicts, intents = [], set()
    for path in journals:
        found = journal_findings(path)
        if found["integrity"] != "ok":
            verdicts.append(f"{path.name}: {found['integrity']}")
        report.duplicates += found["duplicates"]
        intents |= journaled_intents(path)
    report.integrity = "; ".join(verdicts) or ("ok" if journals else "no journal")
    report.intents = len(intents)
    report.rows_lost = len(kept - intents)
