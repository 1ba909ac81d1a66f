"""Benchmarks: what a cycle costs, against the simulated gateway or the stub.

    python tools/bench.py --sim --symbols 1000 --cycles 2 [--json]   (tools/bench_sim.py)
    python tools/bench.py --stub --symbols 200 --cycles 20 [--workers 2] [--repeat 3]

``--sim``: the real IB client against the simulator with IBKR's timing: seconds per cycle,
symbols per 180 s, messages per symbol-cycle, sustained and peak msg/s and lines at the
gateway, violations, CPU and RSS per process. ``--stub`` (the default): the real supervisor,
real spawned workers and the StubBroker with no pause between cycles, and peak RSS per
process, beside the same cycles run in one process (tools/bench_stub.py), ``--repeat`` times
each, alternated: the median runs and their ratio (pool_vs_sequential). Both print the
figures and write them as JSON (``--out``, default var/bench.json). This is a benchmark, not
a test: its numbers depend on the machine.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import sys
import threading
from pathlib import Path
from typing import Any

import psutil

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from common.config import Settings  # noqa: E402
from common.settings_file import parse_settings  # noqa: E402
from supervisor.broker.stub import StubBroker  # noqa: E402
from supervisor.observe.logs import LogService  # noqa: E402
from supervisor.runtime.clock import SimClock  # noqa: E402
from supervisor.runtime.loop import Supervisor  # noqa: E402
from tools.bench_stub import sequential  # noqa: E402


class RssSampler(threading.Thread):
    """Peak RSS of this process and its children, sampled every ``interval_s``."""

    def __init__(self, interval_s: float = 0.2) -> None:
        super().__init__(daemon=True)
        self.interval_s = interval_s
        self.peaks: dict[str, int] = {}
        self.done = threading.Event()

    def run(self) -> None:
        me = psutil.Process()
        while not self.done.wait(self.interval_s):
            for proc in [me, *me.children(recursive=True)]:
                try:
                    name = "supervisor" if proc.pid == me.pid else f"child-{proc.pid}"
                    self.peaks[name] = max(self.peaks.get(name, 0), proc.memory_info().rss)
                except psutil.NoSuchProcess:
                    continue


def stub_settings(symbols: int, cycles: int, workers: int, concurrency: int) -> Settings:
    universe = [f"S{i:04d}" for i in range(symbols)]
    return parse_settings(
        {
            "universe": {"symbols": universe, "max_concurrent_symbols": concurrency},
            "schedule": {
                "cycles": cycles,
                "interval_s": 0,
                "regular_hours_only": False,
                "cycle_deadline_s": 600,
            },
            "workers": {"count": workers},
            "logging": {"level": "WARNING", "json_path": "var/bench.jsonl", "console": False},
            "execution": {"journal_path": "var/bench-journal.sqlite"},
        },
        "bench",
        environ={},
    )


def bench(symbols: int, cycles: int, workers: int, concurrency: int) -> dict[str, Any]:
    settings = stub_settings(symbols, cycles, workers, concurrency)
    clock = SimClock(settings.stub.start.timestamp())
    logs = LogService(settings.logging, None)
    seconds: list[float] = []
    failed: list[int] = []
    rss_mb: list[float] = []  # the supervisor's after each cycle: flat once warmed up
    me = psutil.Process()

    def on_cycle(summary: Any) -> None:  # figures only: the bench keeps no summary either
        seconds.append(summary.seconds)
        failed.append(len(summary.failed))
        rss_mb.append(round(me.memory_info().rss / 2**20, 1))

    supervisor = Supervisor(
        settings,
        StubBroker(settings.stub, clock.now),
        clock,
        logs.handle,
        echo=lambda line: None,
        on_cycle=on_cycle,
    )
    sampler = RssSampler()
    sampler.start()
    try:
        code = asyncio.run(supervisor.run())
    finally:
        sampler.done.set()
        sampler.join()
        logs.close()
    cycle_s = sorted(seconds)
    busy = sum(cycle_s)
    return {
        "symbols": symbols,
        "cycles": len(cycle_s),
        "workers": workers,
        "max_concurrent_symbols": concurrency,
        "exit_code": code,
        "failed_symbols": sum(failed),
        "symbol_cycles_per_s": round(symbols * len(cycle_s) / busy, 1) if busy else None,
        "cycle_s_first": round(seconds[0], 4) if cycle_s else None,
        "cycle_s_p50": round(cycle_s[len(cycle_s) // 2], 4) if cycle_s else None,
        "cycle_s_max": round(cycle_s[-1], 4) if cycle_s else None,
        "peak_rss_mb": {k: round(v / 2**20, 1) for k, v in sorted(sampler.peaks.items())},
        "supervisor_rss_mb_by_cycle": rss_mb,
        **rss_growth(rss_mb),
    }


def rss_growth(rss_mb: list[float]) -> dict[str, Any]:
    """The supervisor's RSS growth per cycle over the second half of the run (the first
    half warms the caches up): about 0 when memory is flat."""
    half = rss_mb[len(rss_mb) // 2 :]
    if len(half) < 2:
        return {"supervisor_rss_mb_per_cycle_late": None}
    return {"supervisor_rss_mb_per_cycle_late": round((half[-1] - half[0]) / (len(half) - 1), 3)}


def bench_stub(
    symbols: int, cycles: int, workers: int, concurrency: int, repeat: int
) -> dict[str, Any]:
    """The pool and the sequential baseline ``repeat`` times each, alternating which goes
    first (a shared machine's speed drifts by a fifth from one run to the next): the median
    pool run's figures, the median baseline's, and their ratios."""
    pools: list[dict[str, Any]] = []
    baselines: list[dict[str, Any]] = []

    def pool() -> None:
        pools.append(bench(symbols, cycles, workers, concurrency))

    def baseline() -> None:
        baselines.append(
            sequential(
                stub_settings(symbols, cycles, workers, concurrency),
                cycles,
                Path("var/bench-sequential.sqlite"),
            )
        )

    for n in range(max(1, repeat)):
        for run in (pool, baseline) if n % 2 == 0 else (baseline, pool):
            run()
    figures = {
        **median_run(pools),
        "repeat": len(pools),
        "runs_symbol_cycles_per_s": [p["symbol_cycles_per_s"] for p in pools],
    }
    figures["sequential"] = {
        **median_run(baselines),
        "runs_symbol_cycles_per_s": [b["symbol_cycles_per_s"] for b in baselines],
    }
    figures["exit_code"] = max(p["exit_code"] for p in pools)
    figures["failed_symbols"] = sum(p["failed_symbols"] for p in pools)
    seq = figures["sequential"]
    if figures["symbol_cycles_per_s"] and seq["symbol_cycles_per_s"]:
        figures["pool_vs_sequential"] = round(
            figures["symbol_cycles_per_s"] / seq["symbol_cycles_per_s"], 2
        )
        # steady cycles alone (the first of a run computes every bar's history)
        figures["pool_vs_sequential_p50"] = round(
            statistics.median(b["cycle_s_p50"] for b in baselines)
            / statistics.median(p["cycle_s_p50"] for p in pools),
            2,
        )
    return figures


def median_run(runs: list[dict[str, Any]]) -> dict[str, Any]:
    """The run of the median throughput (the upper one of an even count)."""
    ordered = sorted(runs, key=lambda r: r["symbol_cycles_per_s"] or 0.0)
    return dict(ordered[len(ordered) // 2])


def main() -> int:
    args = _parser().parse_args()
    if args.sim:
        figures = _sim(args)
        ok = figures["exit_code"] == 0 and not figures["violations"]
    else:
        figures = bench_stub(
            args.symbols, args.cycles, args.workers, args.concurrency or 64, args.repeat
        )
        ok = figures["exit_code"] == 0 and not figures["failed_symbols"]
    text = json.dumps(figures, indent=None if args.json else 2)
    print(text)
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(figures, indent=2) + "\n")
    return 0 if ok else 1


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    market = parser.add_mutually_exclusive_group()
    market.add_argument("--sim", action="store_true", help="the simulated gateway")
    market.add_argument("--stub", action="store_true", help="the StubBroker (the default)")
    parser.add_argument("--symbols", type=int, default=200, help="universe size (default 200)")
    parser.add_argument("--cycles", type=int, default=20, help="cycles (default 20)")
    parser.add_argument("--workers", type=int, default=2, help="worker processes (default 2)")
    parser.add_argument(
        "--concurrency",
        type=int,
        default=None,
        help="max_concurrent_symbols (default: the settings' default)",
    )
    parser.add_argument(
        "--quote-mode",
        choices=("snapshot", "stream"),
        default="snapshot",
        help="--sim: ibkr.quote_mode (default snapshot)",
    )
    parser.add_argument(
        "--line-reserve",
        type=int,
        default=None,
        help="--sim: pacing.line_reserve (default: the settings' default)",
    )
    parser.add_argument(
        "--underlying-price",
        choices=("snapshot", "last_bar"),
        default=None,
        help="--sim: quotes.underlying_price (default: the settings' default)",
    )
    parser.add_argument(
        "--repeat",
        type=int,
        default=3,
        help="--stub: pool and sequential runs, alternated (default 3)",
    )
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    parser.add_argument("--out", default="var/bench.json", help="default var/bench.json")
    return parser


def _sim(args: argparse.Namespace) -> dict[str, Any]:
    """``--sim``: the settings the command line names passed on by section."""
    from tools.bench_sim import bench_sim  # ib_insync and the simulator only here

    extra: dict[str, dict[str, Any]] = {}
    if args.line_reserve is not None:
        extra["pacing"] = {"line_reserve": args.line_reserve}
    if args.underlying_price is not None:
        extra["quotes"] = {"underlying_price": args.underlying_price}
    return bench_sim(
        args.symbols, args.cycles, args.workers, args.concurrency, args.quote_mode, extra
    )


if __name__ == "__main__":
    sys.exit(main())
