"""The real bot against the simulated gateway with IBKR's timing: what a cycle costs.

    python tools/bench.py --sim --symbols 1000 --cycles 2 [--json] [--out var/bench.json]

One supervisor (real workers, the real IB client) runs ``--cycles`` cycles back to back
against a simulator in its own process, whose scenario is configs/scenarios/default.yaml
(snapshot data in tens of ms, its end after ~11 s, bars in 0.2-1 s) widened to ``--symbols``
symbols. The gateway counts every message on arrival; from its per-second counts and the
cycles' wall times come the rates. psutil samples each process's CPU and memory.
"""

from __future__ import annotations

import json
import tempfile
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psutil
import yaml

from common.config import Settings
from common.settings_file import parse_settings
from supervisor.runtime.budget import cycle_budget
from supervisor.runtime.sessions import DEFAULT_SCENARIO, broker_session, run_supervisor
from tools.bench_messages import MessageTally, per_symbol_cycle
from tools.gateway_sim.scenario import load_scenario

BENCH_DIR = Path("var/bench-sim")


class ProcessSampler(threading.Thread):
    """CPU seconds and peak RSS of this process and its children, by role."""

    def __init__(self, interval_s: float = 0.5) -> None:
        super().__init__(daemon=True)
        self.interval_s = interval_s
        self.cpu_s: dict[int, float] = {}
        self.rss: dict[int, int] = {}
        self.role: dict[int, str] = {}
        self.done = threading.Event()

    def run(self) -> None:
        me = psutil.Process()
        while True:
            for proc in [me, *me.children(recursive=True)]:
                self._sample(proc, me.pid)
            if self.done.wait(self.interval_s):
                return

    def _sample(self, proc: psutil.Process, me: int) -> None:
        try:
            with proc.oneshot():
                times, rss = proc.cpu_times(), proc.memory_info().rss
                if proc.pid not in self.role:
                    cmd = " ".join(proc.cmdline())
                    self.role[proc.pid] = (
                        "supervisor"
                        if proc.pid == me
                        else "gateway_sim"
                        if "gateway_sim" in cmd
                        else "worker"
                    )
        except (psutil.NoSuchProcess, psutil.AccessDenied):
            return
        self.cpu_s[proc.pid] = times.user + times.system
        self.rss[proc.pid] = max(self.rss.get(proc.pid, 0), rss)

    def by_role(self, wall_s: float) -> dict[str, dict[str, float]]:
        out: dict[str, dict[str, float]] = {}
        for pid, role in self.role.items():
            entry = out.setdefault(role, {"cpu_pct": 0.0, "peak_rss_mb": 0.0})
            entry["cpu_pct"] += 100.0 * self.cpu_s.get(pid, 0.0) / wall_s
            entry["peak_rss_mb"] = max(entry["peak_rss_mb"], self.rss.get(pid, 0) / 2**20)
        return {r: {k: round(v, 1) for k, v in e.items()} for r, e in sorted(out.items())}


def write_scenario(directory: Path, symbols: int) -> tuple[Path, list[str]]:
    """The default scenario with enough generated symbols; its first ``symbols`` names."""
    raw = yaml.safe_load(DEFAULT_SCENARIO.read_text())
    listed = len(raw.get("symbols", []))
    raw["name"] = f"bench-{symbols}"
    extra = raw["extra_symbols"]
    extra["count"] = max(extra["count"], symbols - listed)
    width = max(2, len(str(extra["count"])))  # SYM05 becomes SYM005 past 99 symbols
    for quirk in raw.get("quirks", []):
        number = quirk["symbol"].removeprefix(extra["prefix"])
        if number != quirk["symbol"] and number.isdigit():
            quirk["symbol"] = f"{extra['prefix']}{int(number):0{width}d}"
    path = directory / "scenario.yaml"
    path.write_text(yaml.safe_dump(raw, sort_keys=False))
    names = [s.symbol for s in load_scenario(path).all_symbols()][:symbols]
    return path, names


def bench_sim(
    symbols: int,
    cycles: int,
    workers: int,
    concurrency: int | None,
    quote_mode: str = "snapshot",
    extra: dict[str, dict[str, Any]] | None = None,
) -> dict[str, Any]:
    """``extra``: more settings by section (``{"pacing": {"line_reserve": 8}}``)."""
    BENCH_DIR.mkdir(parents=True, exist_ok=True)
    for old in BENCH_DIR.glob("journal-*"):
        old.unlink()
    with tempfile.TemporaryDirectory(prefix="bench-sim.") as tmp:
        scenario, universe = write_scenario(Path(tmp), symbols)
        settings = bench_settings(universe, cycles, workers, concurrency, quote_mode, extra)
        tally = MessageTally()
        sampler = ProcessSampler()
        started = time.time()
        sampler.start()
        try:
            run = _run(settings, scenario, tally)
        finally:
            sampler.done.set()
            sampler.join()
        wall_s = time.time() - started
        gateway = json.loads((BENCH_DIR / "gateway_sim_stats.json").read_text())
    processes = sampler.by_role(wall_s)
    return {
        **figures(symbols, run.cycles, run.ends, gateway, run.code, processes, run.settings),
        **per_symbol_cycle(tally.cycles, symbols),
    }


def bench_settings(
    universe: list[str],
    cycles: int,
    workers: int,
    concurrency: int | None,
    quote_mode: str,
    extra: dict[str, dict[str, Any]] | None,
) -> Settings:
    """The bot's settings for the run: ``cycles`` back to back over ``universe``, its log,
    journal and metrics in BENCH_DIR."""
    universe_cfg: dict[str, Any] = {"symbols": universe}
    if concurrency is not None:
        universe_cfg["max_concurrent_symbols"] = concurrency
    return parse_settings(
        {
            "universe": universe_cfg,
            "schedule": {"cycles": cycles, "interval_s": 0, "regular_hours_only": False},
            "workers": {"count": workers},
            "ibkr": {"quote_mode": quote_mode},
            **(extra or {}),
            "logging": {
                "level": "INFO",
                "json_path": str(BENCH_DIR / "bot.jsonl"),
                "console": False,
            },
            "execution": {"journal_path": str(BENCH_DIR / "journal-{broker}.sqlite")},
            "monitoring": {"metrics_path": str(BENCH_DIR / "metrics.jsonl")},
        },
        "bench",
        environ={},
    )


@dataclass(frozen=True)
class _Run:
    code: int  # the supervisor's exit code
    cycles: list[dict[str, Any]]  # per cycle: seconds, failed, skipped, rss (no summary kept)
    ends: list[float]  # wall time at each cycle's printed line
    settings: Settings  # as the session ran the bot (the sim's port, this journal filled in)


def _run(settings: Settings, scenario: Path, tally: MessageTally) -> _Run:
    """The supervisor against a simulator of ``scenario``, the client's messages tallied."""
    ends: list[float] = []
    seen: list[dict[str, Any]] = []
    with broker_session(settings, "sim", str(scenario), sim_dir=BENCH_DIR) as session:
        broker, clock, run_settings = session
        tally.install(broker.ib.client)  # type: ignore[attr-defined]
        code, _ = run_supervisor(
            run_settings,
            broker,
            clock,
            console=False,
            echo=lambda _line: ends.append(time.time()),
            on_cycle=lambda s: seen.append(cycle_figures(s, tally)),
        )
    return _Run(code, seen, ends, run_settings)


def cycle_figures(summary: Any, tally: MessageTally) -> dict[str, Any]:
    """A cycle's figures as it ends (its summary is not kept), its messages closed."""
    tally.end_cycle(summary.results)
    return {
        "seconds": summary.seconds,
        "failed": len(summary.failed),
        "skipped": sum(1 for r in summary.results if r.ok and r.skipped),
        "rss_mb": round(psutil.Process().memory_info().rss / 2**20, 1),
    }


def figures(
    symbols: int,
    cycles: list[dict[str, Any]],
    ends: list[float],
    gateway: dict[str, Any],
    code: int,
    processes: dict[str, Any],
    settings: Any,
) -> dict[str, Any]:
    seconds = [c["seconds"] for c in cycles]
    budget = cycle_budget(settings, symbols)
    windows = [(end - s, end) for s, end in zip(seconds, ends, strict=False)]
    by_second = {int(k): v for k, v in gateway.get("messages_by_second", {}).items()}
    steady = windows[1:] or windows
    steady_s = sum(b - a for a, b in steady) / len(steady) if steady else 0.0
    steady_msgs = sum(_messages(by_second, a, b) for a, b in steady) / max(1, len(steady))
    return {
        "symbols": symbols,
        "cycles": len(cycles),
        "exit_code": code,
        # as the cycles used them (auto: from the pace and the lines, budget.py)
        "max_concurrent_symbols": budget.in_flight,
        "cycle_deadline_s": round(budget.deadline_s, 1),
        "max_messages_per_s": settings.pacing.max_messages_per_s,
        "quote_mode": settings.ibkr.quote_mode,
        "line_reserve": settings.pacing.line_reserve,
        "underlying_price": settings.quotes.underlying_price,
        "cycle_s": [round(s, 2) for s in seconds],
        "first_cycle_s": round(seconds[0], 2) if seconds else None,
        "steady_cycle_s": round(steady_s, 2),
        "symbols_per_180s": round(symbols * 180 / steady_s) if steady_s else None,
        "msg_per_symbol_cycle": round(steady_msgs / symbols, 2),
        "first_msg_per_symbol_cycle": round(_messages(by_second, *windows[0]) / symbols, 2)
        if windows
        else None,
        "sustained_msg_per_s": round(steady_msgs / steady_s, 2) if steady_s else None,
        "peak_msg_per_s": gateway.get("peak_messages_per_s"),
        "peak_lines": gateway.get("market_data_lines_peak"),
        "violations": gateway.get("violations_total"),
        # +PACEAPI: what a gateway held back instead of counting a violation (0: never over)
        "messages_paced": gateway.get("messages_paced"),
        "failed_symbols_per_cycle": [c["failed"] for c in cycles],
        "skipped_symbols_per_cycle": [c["skipped"] for c in cycles],
        "supervisor_rss_mb_by_cycle": [c["rss_mb"] for c in cycles],
        "processes": processes,
    }


def _messages(by_second: dict[int, int], start: float, end: float) -> float:
    """Messages the gateway received in [start, end), partial seconds pro rata."""
    total = 0.0
    for second in range(int(start), int(end) + 1):
        overlap = min(end, second + 1) - max(start, second)
        if overlap > 0:
            total += by_second.get(second, 0) * overlap
    return total
