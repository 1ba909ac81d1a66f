"""``chaos``: the bot against the simulator for N cycles while faults land on a seeded
schedule, then the checks; exit 0 only if every one holds.

    Gateway  python -m tools.gateway_sim on one port (its own timed faults and bad quotes)
       ^
    Bot      python -m supervisor run --broker sim (restarted on the same journal after kills)
       ^
    driver   counts cycle lines, injects plan()'s faults as cycles pass (worker SIGKILL,
             gateway SIGKILL + restart, supervisor SIGTERM / SIGKILL + restart, a worker
             hung on cue, the gateway frozen with SIGSTOP, the journal deleted or replaced,
             1,100 connections to the status port; the alert webhook hangs all along), times
             each recovery (to the first cycle in which every symbol decided), snapshots the
             journal's intents before every kill, samples every process's RSS by role; at
             the end (chaos_verdict): the log against the journals, the simulator's own order
             log for brackets sent twice, and the rest of chaos_checks

``--live`` runs the bot in live mode on the simulator's paper account (the settings file,
``--live`` and the account the gateway reports agree), so the gateway sees real brackets.

Everything of a run lives in ``--out`` (default var/chaos in the bot's state folder, as the
embedded default's journal: never the working directory), emptied first: the verdict speaks
of this run only.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import resource
import signal
import sys
import time
from collections import deque
from pathlib import Path

from supervisor.commands.chaos_checks import ChaosReport, Recovery, journaled_intents
from supervisor.commands.chaos_faults import (
    Flood,
    PingCounter,
    SilentEndpoint,
    answers,
    backup,
    free_port,
    keep_wal,
    take_journal,
)
from supervisor.commands.chaos_plan import (
    ALERT_HANG,
    CLOCK_RATE,
    FD_FLOOD,
    GATEWAY_FREEZE,
    GATEWAY_RESTART,
    JOURNAL_DELETE,
    JOURNAL_REPLACE,
    KINDS,
    SUPERVISOR_KILL,
    SUPERVISOR_TERM,
    WORKER_HANG,
    WORKER_KILL,
    Fault,
    Wiring,
    plan,
    write_scenario,
    write_settings,
)
from supervisor.commands.chaos_procs import Bot, Gateway, RssWatch, last_error, running, tail
from supervisor.commands.chaos_verdict import Active, judge
from supervisor.commands.phases import out_folder, writable_folder
from supervisor.runtime.status import progress

HANG_S = 90.0  # no cycle line for this long (nothing being restarted): a hung bot
NOTICE_S = 30.0  # a hang cue not taken, a journal fault not noticed, within this: a finding
FLOOD_CONNECTIONS, FLOOD_S = 1_100, 10.0
STARTS_IN_VAIN = 3
RUN_FILES = (
    "journal.sqlite",
    "journal.sqlite.lock",
    "metrics.jsonl",
    "bot.jsonl",
    "sim.stats.json",
    "gateway_sim.log",
    "sim.clock",
    "sim.port",
    "sim-orders.jsonl",
    "hang.cue",
    "hang.cue.taken",
    "journal-backup.sqlite",
)


def add_chaos_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--cycles", type=int, required=True, help="cycles to complete")
    parser.add_argument("--seed", type=int, default=1, help="the fault schedule's seed")
    parser.add_argument("--workers", type=int, default=2, help="worker processes (default 2)")
    parser.add_argument(
        "--live",
        action="store_true",
        help="live mode on the simulator's paper account: real brackets",
    )
    parser.add_argument(
        "--out", help="where the run's files go (default: var/chaos in the bot's state folder)"
    )
    parser.add_argument(
        "--max-rss-growth-mb",
        type=float,
        default=64.0,
        help="RSS growth over the run allowed per process role (default 64)",
    )
    parser.add_argument(
        "--recovery-limit-s",
        type=float,
        default=60.0,
        help="to the first cycle every symbol decided after a fault (60)",
    )
    parser.add_argument(
        "--without",
        default="",
        metavar="KIND[,KIND]",
        help="leave these fault kinds out of the plan (e.g. journal_replace)",
    )
    parser.add_argument("--json", action="store_true", help="print the report as JSON")


def cmd_chaos(args: argparse.Namespace) -> int:
    if args.cycles < 1 or args.workers < 1:
        print("chaos: --cycles and --workers must be at least 1", file=sys.stderr)
        return 2
    left_out = sorted({k.strip() for k in args.without.split(",") if k.strip()})
    if set(left_out) - set(KINDS):
        print(
            f"chaos: --without: not a fault kind: {', '.join(set(left_out) - set(KINDS))} "
            f"(kinds: {', '.join(KINDS)})",
            file=sys.stderr,
        )
        return 2
    out = out_folder(args.out, None, "chaos").resolve()
    if not writable_folder(out, "chaos"):
        return 2
    for name in RUN_FILES:
        (out / name).unlink(missing_ok=True)
    for old in [
        *out.glob("bot-*.stderr"),
        *out.glob("metrics.jsonl.*"),
        *out.glob("bot.jsonl.*"),
        *out.glob("journal-gone-*"),
        *out.glob("journal.sqlite-*"),
    ]:
        old.unlink()
    _soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)  # the flood's connections
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    report = ChaosReport(
        args.cycles,
        args.seed,
        live=args.live,
        without=left_out,
        max_rss_growth_mb=args.max_rss_growth_mb,
        recovery_limit_s=args.recovery_limit_s,
    )
    driver = Driver(args, out, report)
    try:
        driver.run()
    except KeyboardInterrupt:
        report.crashes.append("interrupted (Ctrl-C) before the planned cycles")
    except CannotStart as exc:
        report.crashes.append(str(exc))
    finally:
        driver.finish()
    print(json.dumps(report.to_dict(), indent=2) if args.json else "\n".join(report.lines()))
    return 0 if not report.problems() else 1


class CannotStart(Exception):
    pass


class Driver:
    def __init__(self, args: argparse.Namespace, out: Path, report: ChaosReport) -> None:
        self.args = args
        self.out = out
        self.report = report
        self.rng = random.Random(args.seed)
        self.faults: deque[Fault] = deque(
            f for f in plan(args.cycles, args.seed) if f.kind not in report.without
        )
        self.gateway = Gateway(write_scenario(out), out)
        self.webhook, self.heartbeat = SilentEndpoint(), PingCounter()
        self.status_port = free_port()
        self.settings = write_settings(
            out,
            args.workers,
            Wiring(self.status_port, self.webhook.url, self.heartbeat.url),
            live=args.live,
        )
        self.journal = out / "journal.sqlite"
        self.journals: list[Path] = []  # journals a fault took away (linked aside)
        self.kept: set[str] = set()  # intents journaled before some kill: none may be lost
        self.kills_at: list[float] = []  # session time of each supervisor SIGKILL
        self.watch = RssWatch()
        self.bot: Bot | None = None
        self.bots: list[Bot] = []
        self.pending: Recovery | None = None
        self.active: Active | None = None  # a fault still going on (or awaited)
        self.fault_t0: float | None = None  # its recovery is timed from here
        self.progress_t = 0.0
        self.watched_t = 0.0
        self.last_progress = time.monotonic()
        self.started = time.monotonic()

    # --- the run -----------------------------------------------------------------------------

    def run(self) -> None:
        self.report.faults[ALERT_HANG] = 1  # the webhook hangs from the start to the end
        self.gateway.start()
        self.bot = self._new_bot()
        # the planned cycles, and on until every planned fault was injected and recovered
        # from (or given up on): fast cycles must not leave faults of the plan out
        while self.report.cycles < self.args.cycles or self.faults or self.pending:
            self._tick(self.bot)
            time.sleep(0.05)

    def _tick(self, bot: Bot) -> None:
        now = time.monotonic()
        if bot.new_cycles()[0]:
            self._counted()
            self.last_progress = now
        if now - self.watched_t >= 1.0:
            self.watched_t = now
            bot.watch()
            self.watch.sample(bot, self.gateway)
            self._say_progress(now)
            if self.report.cycles >= 5 and not (self.out / "journal-backup.sqlite").exists():
                backup(self.journal, self.out / "journal-backup.sqlite")  # a replacement
        if self.active is not None:
            self._go_on(self.active, bot, now)
        elif (
            self.pending is not None
            and self.fault_t0 is not None
            and (now - self.fault_t0 > 2 * self.args.recovery_limit_s)
        ):
            self.pending = None  # never recovered (seconds None): the next fault may come
        elif not bot.alive():
            self._crash(
                f"bot run {self.report.bot_runs} exited with code {bot.proc.poll()} by itself"
            )
            self._finish_bot(bot)
            self.bot = self._new_bot()
        elif now - self.last_progress > HANG_S:
            self.report.hung_cycles += 1
            self._kill_bot(bot)
        elif (
            self.pending is None and self.faults and self.faults[0].at_cycle <= (self.report.cycles)
        ):
            self._inject(self.faults.popleft(), self.bot or bot)

    def _counted(self) -> None:
        """A fault is recovered from at the first cycle every symbol decided after it."""
        self.report.cycles = sum(b.cycles for b in self.bots)
        self.report.healthy_cycles = sum(b.healthy for b in self.bots)
        if self.pending is None or self.fault_t0 is None or self.bot is None:
            return
        after = [t for t in self.bot.healthy_at if t > self.fault_t0]
        if after:
            self.pending.seconds = round(after[0] - self.fault_t0, 2)
            self.pending = None

    def _say_progress(self, now: float) -> None:
        """``chaos: 150/1000, ETA 6m10s · 12 faults`` on stderr every 30 s."""
        if now - self.progress_t < 30.0 and self.progress_t:
            return
        self.progress_t = now
        done = progress(self.report.cycles, self.args.cycles, now - self.started)
        print(
            f"chaos:{done.removeprefix(' ·')} · {len(self.report.recoveries)} faults",
            file=sys.stderr,
            flush=True,
        )

    # --- faults ------------------------------------------------------------------------------

    def _inject(self, fault: Fault, bot: Bot) -> None:
        self.pending = Recovery(fault.kind, self.report.cycles, None)
        self.report.recoveries.append(self.pending)
        self.report.faults[fault.kind] = self.report.faults.get(fault.kind, 0) + 1
        self.fault_t0 = now = time.monotonic()
        kind = fault.kind
        if kind == WORKER_KILL:
            self._kill_a_worker(bot)
        elif kind == GATEWAY_RESTART:
            self.gateway.kill_and_restart(down_s=self.rng.uniform(1.0, 6.0))
            self.report.gateway_restarts = self.gateway.restarts
            self.fault_t0 = time.monotonic()  # the bot's part starts once the gateway is back
        elif kind in (SUPERVISOR_TERM, SUPERVISOR_KILL):
            self.kept |= journaled_intents(self.journal)
            if kind == SUPERVISOR_TERM:
                self._finish_bot(bot, signal.SIGTERM)
                self.bot = self._new_bot()
            else:
                self._kill_bot(bot)
        else:
            self.fault_t0 = None  # timed once the fault is over (or noticed)
            self.active = Active(kind, now + NOTICE_S)
            self._start_active(self.active, bot)
        self.last_progress = time.monotonic()

    def _start_active(self, active: Active, bot: Bot) -> None:
        if active.kind == WORKER_HANG:
            (self.out / "hang.cue").write_text("*\n")
        elif active.kind == GATEWAY_FREEZE:
            self.gateway.freeze(True)
            active.until = time.monotonic() + self.rng.uniform(5.0, 20.0)
        elif active.kind in (JOURNAL_DELETE, JOURNAL_REPLACE):
            self.kept |= journaled_intents(self.journal)
            aside = self.out / f"journal-gone-{len(self.journals) + 1}.sqlite"
            copy = self.out / "journal-backup.sqlite"
            replacement = copy if active.kind == JOURNAL_REPLACE and copy.exists() else None
            if take_journal(self.journal, aside, replacement):
                self.journals.append(aside)
                active.aside = aside
                active.seen = bot.stderr_path.stat().st_size
        elif active.kind == FD_FLOOD:
            active.flood = Flood(self.status_port, FLOOD_CONNECTIONS)
            self._kill_a_worker(bot)  # meanwhile: it must still be replaced
            active.until = time.monotonic() + FLOOD_S

    def _go_on(self, active: Active, bot: Bot, now: float) -> None:
        """Whether the fault still goes on; once over, its recovery is timed from now."""
        late = now >= active.until
        if active.kind == WORKER_HANG:
            if not self._hang_taken(late):
                return
        elif active.kind == GATEWAY_FREEZE:
            if not late:
                return
            self.gateway.freeze(False)
        elif active.kind in (JOURNAL_DELETE, JOURNAL_REPLACE):
            if not self._journal_noticed(active, bot, late):
                return
        elif active.kind == FD_FLOOD:
            if not late:
                return
            taken = active.flood.release() if active.flood else 0
            self.report.flood_connections = max(self.report.flood_connections, taken)
            if not answers(self.status_port):
                self.report.findings.append(
                    f"fd_flood ({taken} connections): /healthz does not answer after they closed"
                )
        self.active = None
        self.fault_t0 = now  # over (or noticed) now: what follows is the bot's recovery
        self.last_progress = time.monotonic()

    def _hang_taken(self, late: bool) -> bool:
        """Once a worker took the cue (it hangs now), or never: its recovery is timed."""
        taken = self.out / "hang.cue.taken"
        if not taken.exists() and not late:
            return False
        if not taken.exists():
            self.report.findings.append("worker_hang: no worker took the cue")
            (self.out / "hang.cue").unlink(missing_ok=True)
        taken.unlink(missing_ok=True)
        return True

    def _journal_noticed(self, active: Active, bot: Bot, late: bool) -> bool:
        """Once the bot said its journal is lost (or never did): restarted, the operator's
        fix, on the file now at the path (none: a new one; replaced: the backup)."""
        noticed = "journal lost" in tail(bot.stderr_path, active.seen)
        if not noticed and not late:
            return False
        if not noticed:
            at = self.pending.at_cycle if self.pending else self.report.cycles
            self.report.findings.append(f"{active.kind} at cycle {at}: the bot never said so")
        self._finish_bot(bot, signal.SIGTERM)
        if active.aside is not None:
            keep_wal(self.journal, active.aside)
        self.bot = self._new_bot()
        return True

    def _kill_a_worker(self, bot: Bot) -> None:
        workers = bot.workers()
        if workers:
            os.kill(self.rng.choice(workers), signal.SIGKILL)

    # --- bots --------------------------------------------------------------------------------

    def _new_bot(self) -> Bot:
        """The next bot run; after STARTS_IN_VAIN runs in a row without a cycle, the run is
        over (a bot that cannot start any more is the verdict, not something to retry)."""
        ended = [b for b in self.bots[-STARTS_IN_VAIN:] if not b.alive()]
        if len(ended) == STARTS_IN_VAIN and not any(b.cycles for b in ended):
            raise CannotStart(
                f"{STARTS_IN_VAIN} bot runs in a row ended without a cycle "
                f"(the last: {last_error(ended[-1].stderr_path)})"
            )
        self.last_progress = time.monotonic()
        self.report.bot_runs += 1
        bot = Bot(self.settings, self.gateway, self.out, self.report.bot_runs, self.args.live)
        self.bots.append(bot)
        return bot

    def _kill_bot(self, bot: Bot) -> None:
        self.kills_at.append(self.gateway.now())
        self._finish_bot(bot, signal.SIGKILL)
        self.bot = self._new_bot()

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
        if self.active is not None and self.bot is not None:
            self.active.until = 0.0  # thaw, release, restart: nothing left half done
            try:
                self._go_on(self.active, self.bot, time.monotonic())
            except CannotStart as exc:
                self._crash(str(exc))
        if self.bot is not None:
            self._finish_bot(self.bot, signal.SIGTERM)
        self.gateway.stop()
        self.webhook.close()
        self.heartbeat.close()
        self.report.heartbeats = len(self.heartbeat.times)
        self.report.orphans += sum(1 for pid in self.gateway.pids if running(pid))
        judge(
            self.report,
            self.out,
            [*self.journals, self.journal],
            self.kept,
            [(t - 30 * CLOCK_RATE, t) for t in self.kills_at],
            self.watch.samples,
        )
        self.report.wall_s = round(time.monotonic() - self.started, 1)
