"""``chaos``: the bot against the simulator for N cycles while faults land on a seeded
schedule, then the checks; exit 0 only if every one holds.

    Gateway  python -m tools.gateway_sim on one port (its own timed faults and bad quotes)
       ^
    Bot      python -m supervisor run --broker sim (restarted on the same journal after kills)
       ^
    driver   counts cycle lines, injects plan()'s faults as cycles pass (worker SIGKILL,
             gateway SIGKILL + restart, supervisor SIGTERM / SIGKILL + restart), times each
             recovery, snapshots the journal's intents before every kill; at the end:
             cycles, hung cycles, crashes, integrity_check, rows lost, duplicates, orphans,
             supervisor RSS growth (chaos_checks)

Everything of a run lives in ``--out`` (default var/chaos), emptied first: the verdict speaks
of this run only.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import signal
import sys
import time
from collections import deque
from pathlib import Path

import psutil

from supervisor.commands.chaos_checks import (
    ChaosReport,
    Recovery,
    journal_findings,
    journaled_intents,
)
from supervisor.commands.chaos_plan import (
    GATEWAY_RESTART,
    SUPERVISOR_KILL,
    SUPERVISOR_TERM,
    WORKER_KILL,
    Fault,
    plan,
    write_scenario,
    write_settings,
)
from supervisor.commands.chaos_procs import Bot, Gateway
from supervisor.runtime.status import progress

HANG_S = 90.0  # no cycle line for this long (nothing being restarted): a hung bot
RUN_FILES = ("journal.sqlite", "journal.sqlite.lock", "metrics.jsonl", "bot.jsonl",
             "sim.stats.json", "gateway_sim.log", "sim.clock", "sim.port")


def add_chaos_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--cycles", type=int, required=True, help="cycles to complete")
    parser.add_argument("--seed", type=int, default=1, help="the fault schedule's seed")
    parser.add_argument("--workers", type=int, default=2, help="worker processes (default 2)")
    parser.add_argument("--out", default="var/chaos", help="where the run's files go")
    parser.add_argument("--max-rss-growth-mb", type=float, default=64.0,
                        help="supervisor RSS growth allowed after warm-up (default 64)")
    parser.add_argument("--json", action="store_true", help="print the report as JSON")


def cmd_chaos(args: argparse.Namespace) -> int:
    if args.cycles < 1 or args.workers < 1:
        print("chaos: --cycles and --workers must be at least 1", file=sys.stderr)
        return 2
    out = Path(args.out).resolve()
    out.mkdir(parents=True, exist_ok=True)
    for name in RUN_FILES:
        (out / name).unlink(missing_ok=True)
    for old in [*out.glob("bot-*.stderr"), *out.glob("metrics.jsonl.*")]:
        old.unlink()
    report = ChaosReport(args.cycles, args.seed, max_rss_growth_mb=args.max_rss_growth_mb)
    driver = Driver(args, out, report)
    try:
        driver.run()
    except KeyboardInterrupt:
        report.crashes.append("interrupted (Ctrl-C) before the planned cycles")
    finally:
        driver.finish()
    print(json.dumps(report.to_dict(), indent=2) if args.json else "\n".join(report.lines()))
    return 0 if not report.problems() else 1


class Driver:
    def __init__(self, args: argparse.Namespace, out: Path, report: ChaosReport) -> None:
        self.args = args
        self.out = out
        self.report = report
        self.rng = random.Random(args.seed)
        self.faults: deque[Fault] = deque(plan(args.cycles, args.seed))
        self.gateway = Gateway(write_scenario(out), out)
        self.settings = write_settings(out, args.workers)
        self.journal = out / "journal.sqlite"
        self.kept: set[str] = set()  # intents journaled before some kill: none may be lost
        self.bot: Bot | None = None
        self.bots: list[Bot] = []
        self.pending: Recovery | None = None
        self.fault_t0 = 0.0
        self.progress_t = 0.0
        self.watched_t = 0.0
        self.last_progress = time.monotonic()
        self.started = time.monotonic()

    # --- the run -----------------------------------------------------------------------------

    def run(self) -> None:
        self.gateway.start()
        self.bot = self._new_bot()
        while self.report.cycles < self.args.cycles:
            self._tick(self.bot)
            time.sleep(0.05)

    def _tick(self, bot: Bot) -> None:
        now = time.monotonic()
        cycles, healthy = bot.new_cycles()
        if cycles:
            self._counted(healthy)
            self.last_progress = now
        if now - self.watched_t >= 1.0:
            self.watched_t = now
            bot.watch()
            self._say_progress(now)
        if not bot.alive():
            self._crash(f"bot run {self.report.bot_runs} exited with code {bot.proc.poll()} "
                        "by itself")
            self._finish_bot(bot)
            self.bot = self._new_bot()
        elif now - self.last_progress > HANG_S:
            self.report.hung_cycles += 1
            self._finish_bot(bot, signal.SIGKILL)
            self.bot = self._new_bot()
        elif self.pending is None and self.faults and self.faults[0].at_cycle <= (
                self.report.cycles):
            self._inject(self.faults.popleft(), bot)

    def _counted(self, healthy: int) -> None:
        """A fault is recovered from at the first healthy cycle after it."""
        self.report.cycles = sum(b.cycles for b in self.bots)
        self.report.healthy_cycles = sum(b.healthy for b in self.bots)
        if self.pending is not None and healthy:
            self.pending.seconds = round(time.monotonic() - self.fault_t0, 2)
            self.pending = None

    def _say_progress(self, now: float) -> None:
        """``chaos: 150/1000, ETA 6m10s · 12 faults`` on stderr every 30 s."""
        if now - self.progress_t < 30.0 and self.progress_t:
            return
        self.progress_t = now
        done = progress(self.report.cycles, self.args.cycles, now - self.started)
        print(f"chaos:{done.removeprefix(' ·')} · {len(self.report.recoveries)} faults",
              file=sys.stderr, flush=True)

    # --- faults ------------------------------------------------------------------------------

    def _inject(self, fault: Fault, bot: Bot) -> None:
        self.pending = Recovery(fault.kind, self.report.cycles, None)
        self.report.recoveries.append(self.pending)
        self.fault_t0 = time.monotonic()
        if fault.kind == WORKER_KILL:
            workers = bot.workers()
            if workers:
                os.kill(self.rng.choice(workers), signal.SIGKILL)
        elif fault.kind == GATEWAY_RESTART:
            self.gateway.kill_and_restart(down_s=self.rng.uniform(1.0, 6.0))
            self.report.gateway_restarts = self.gateway.restarts
            bot.new_cycles()  # what finished while it was down is not a recovery
            self.fault_t0 = time.monotonic()  # the bot's part starts once the gateway is back
        elif fault.kind in (SUPERVISOR_TERM, SUPERVISOR_KILL):
            self.kept |= journaled_intents(self.journal)
            term = fault.kind == SUPERVISOR_TERM
            self._finish_bot(bot, signal.SIGTERM if term else signal.SIGKILL)
            self.bot = self._new_bot()
        self.last_progress = time.monotonic()

    # --- bots --------------------------------------------------------------------------------

    def _new_bot(self) -> Bot:
        self.report.bot_runs += 1
        bot = Bot(self.settings, self.gateway, self.out, self.report.bot_runs)
        self.bots.append(bot)
        return bot

    def _finish_bot(self, bot: Bot, signum: int | None = None) -> None:
        """Stop it (SIGTERM must give exit 0) and hold its workers to account."""
        if signum is not None and bot.alive():
            code = bot.stop(signum)
            if signum == signal.SIGTERM and code != 0:
                self._crash(f"bot run {self.bots.index(bot) + 1}: SIGTERM gave exit {code}")
        bot.new_cycles()
        self.report.cycles = sum(b.cycles for b in self.bots)
        self.report.orphans += len(bot.orphans())
        if bot.traceback():
            self._crash(f"a traceback in {bot.stderr_path.name}")

    def _crash(self, what: str) -> None:
        self.report.crashes.append(what)

    # --- the end -----------------------------------------------------------------------------

    def finish(self) -> None:
        if self.bot is not None:
            self._finish_bot(self.bot, signal.SIGTERM)
        self.gateway.stop()
        self.report.orphans += sum(1 for pid in self.gateway.pids if _running(pid))
        growth = [g for b in self.bots if (g := b.rss_growth_kb()) is not None]
        self.report.rss_growth_mb = round(max(growth, default=0.0) / 1024, 1)
        if self.journal.exists():
            found = journal_findings(self.journal)
            self.report.integrity = found["integrity"]
            self.report.duplicates = found["duplicates"]
            self.report.intents = found["intents"]
            self.report.rows_lost = len(self.kept - journaled_intents(self.journal))
        self.report.wall_s = round(time.monotonic() - self.started, 1)


def _running(pid: int) -> bool:
    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False
