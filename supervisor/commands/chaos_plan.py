"""What ``chaos`` does to the bot: a seeded schedule of process faults, and the market the
simulator plays (its own timed faults and bad quotes), written as files the children read.

    plan(cycles, seed) -> [Fault(at_cycle, kind)]   worker / gateway / supervisor kills, a
                            hung worker, a frozen gateway, the journal deleted or replaced,
                            a descriptor flood on the status port
    write_scenario(out)  -> the soak scenario + 1100/1101/1102, a disconnect, snapshots that
                            never end, NaN / -1 / crossed option quotes
    write_settings(out)  -> the bot's settings: back-to-back cycles, files under ``out``,
                            the strategy that hangs on cue, the status port, a hanging
                            webhook and a counted heartbeat; live: the simulator's paper
                            account
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from common.locations import scenario
from supervisor.commands.chaos_hang import STRATEGY

SOAK_SCENARIO = scenario("soak")
WORKER_KILL, GATEWAY_RESTART, SUPERVISOR_TERM, SUPERVISOR_KILL = (
    "worker_kill",
    "gateway_restart",
    "supervisor_term",
    "supervisor_kill",
)
WORKER_HANG, GATEWAY_FREEZE, JOURNAL_DELETE, JOURNAL_REPLACE, FD_FLOOD = (
    "worker_hang",
    "gateway_freeze",
    "journal_delete",
    "journal_replace",
    "fd_flood",
)
KINDS = (
    WORKER_KILL,
    GATEWAY_RESTART,
    SUPERVISOR_TERM,
    SUPERVISOR_KILL,
    WORKER_HANG,
    GATEWAY_FREEZE,
    JOURNAL_DELETE,
    JOURNAL_REPLACE,
    FD_FLOOD,
)
ALERT_HANG = "alert_hang"  # not scheduled: the webhook hangs for the whole run
SIM_ACCOUNT = "DU1234567"  # the soak scenario's paper account (live runs trade it)
BOT_CLIENT_ID = 1
CLOCK_RATE = 20.0

# The simulator's own faults, in seconds after every connection from the bot: the link lost
# and restored with and without data, a snapshot that never ends, then the socket dropped
# (the reconnect starts the sequence again); and quote defects on every few option strikes.
SIM_FAULTS: list[dict[str, Any]] = [
    {"kind": "error", "code": 1100, "at_s": 5.0},
    {"kind": "error", "code": 1102, "at_s": 7.0},
    {"kind": "error", "code": 1100, "at_s": 12.0},
    {"kind": "error", "code": 1101, "at_s": 14.0},
    {
        "kind": "snapshot_never_ends",
        "symbol": "QQQ",
        "sec_type": "STK",
        "at_s": 18.0,
        "until_s": 22.0,
    },
    {"kind": "disconnect", "at_s": 60.0},
]
for _fault in SIM_FAULTS:
    _fault.update(client_id=BOT_CLIENT_ID, every_connection=True)
SIM_QUIRKS: list[dict[str, Any]] = [
    {"symbol": "SPY", "kind": "crossed", "sec_type": "OPT", "every_nth_strike": 5},
    {"symbol": "QQQ", "kind": "minus_one", "sec_type": "OPT", "every_nth_strike": 4},
    {"symbol": "AAPL", "kind": "missing", "sec_type": "OPT", "every_nth_strike": 3},
]


@dataclass(frozen=True)
class Fault:
    at_cycle: int  # injected once this many cycles have completed (over every bot run)
    kind: str


def plan(cycles: int, seed: int) -> list[Fault]:
    """Faults spread over the run, in seeded order: the same seed, the same schedule."""
    rng = random.Random(seed)
    kinds = (
        [WORKER_KILL] * max(3, cycles // 40)
        + [GATEWAY_RESTART] * max(1, cycles // 250)
        + [SUPERVISOR_TERM] * max(1, cycles // 500)
        + [SUPERVISOR_KILL] * max(1, cycles // 500)
        + [WORKER_HANG] * max(1, cycles // 100)
        + [GATEWAY_FREEZE] * max(1, cycles // 150)
        + [JOURNAL_DELETE, JOURNAL_REPLACE] * max(1, cycles // 500)
        + [FD_FLOOD] * max(1, cycles // 300)
    )
    rng.shuffle(kinds)
    first, last = 3, max(4, int(cycles * 0.9))  # a quiet start and end to judge against
    spots = sorted(rng.sample(range(first, last), min(len(kinds), last - first)))
    return [Fault(at, kind) for at, kind in zip(spots, kinds, strict=False)]


def write_scenario(out: Path) -> Path:
    scenario = yaml.safe_load(SOAK_SCENARIO.read_text(encoding="utf-8"))
    scenario.update(name="chaos", faults=SIM_FAULTS, quirks=SIM_QUIRKS)
    # 20 market seconds per second: a 1,000-cycle run sees hours of prices, so signals
    # change and intents are journaled (and must survive the kills) all along
    scenario["clock"]["rate"] = CLOCK_RATE
    path = out / "chaos-scenario.yaml"
    path.write_text(yaml.safe_dump(scenario, sort_keys=False), encoding="utf-8")
    return path


@dataclass(frozen=True)
class Wiring:
    """Where the bot's side channels point: its status port, the alert endpoints."""

    status_port: int
    webhook_url: str  # the hanging one
    heartbeat_url: str  # the counted one


def write_settings(out: Path, workers: int, wiring: Wiring, live: bool = False) -> Path:
    settings: dict[str, Any] = {
        "ibkr": {"client_id": BOT_CLIENT_ID},
        "schedule": {"interval_s": 0, "regular_hours_only": False, "cycle_deadline_s": 30},
        "workers": {"count": workers, "max_respawns_per_minute": 60, "step_timeout_s": 5},
        "strategy": {"name": STRATEGY},
        "execution": {"journal_path": str(out / "journal.sqlite")},
        "monitoring": {
            "metrics_path": str(out / "metrics.jsonl"),
            "interval_s": 2,
            "http_port": wiring.status_port,
        },
        "alerts": {
            "webhook_url": wiring.webhook_url,
            "heartbeat_url": wiring.heartbeat_url,
            "heartbeat_interval_s": 2,
        },
        "logging": {"json_path": str(out / "bot.jsonl"), "console": True},
    }
    if live:  # the file, the command line (--live) and the connected account agree
        settings["execution"]["mode"] = "live"
        settings["ibkr"]["account"] = SIM_ACCOUNT
    path = out / "chaos-settings.yaml"
    path.write_text(yaml.safe_dump(settings, sort_keys=False), encoding="utf-8")
    return path
