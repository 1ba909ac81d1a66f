"""What the flight recorder costs: CPU as a share of a core, and bytes per symbol-day.

    python tools/bench_recording.py [--symbols 1000] [--cycles 10] [--repeat 2] [--json]

The stub pipeline's cycles (the offline driver, supervisor/runtime/offline.py: the
supervisor's own cycle with its symbols run in this process, one process's CPU measured)
over ``--symbols`` symbols, each cycle one market minute after the last, run with the
StubBroker as it is ("off") and wrapped in the RecordingBroker writing a real recording
("on"), alternately ``--repeat`` times each. Figures:

- ``recorder_cpu_s_first_cycle`` / ``recorder_cpu_s_per_cycle``: the recorder's own CPU
  (its thread time in recording and writing parts, which it sums) in a run's first cycle
  (every symbol's bar lookback) and in each later one (median);
- ``share_of_a_core``: a regular session's recorder CPU (the first cycle, the later ones at
  a cycle every ``--interval`` market seconds, the compaction at the end) over the session's
  seconds: its share of one core while the bot runs — the goal is under 2 %;
- ``cpu_s_per_cycle_off`` / ``_on`` and their difference: the whole process's CPU per cycle
  without and with the recorder (medians; a cross-check, noisy on a busy machine);
- ``bytes_per_symbol_day``: the finished recording's size per symbol per cycle after its
  first (the first cycle's chains, hours and bar lookbacks are once a run, counted apart as
  ``first_cycle_bytes_per_symbol``), times the cycles of a regular session at that interval
  (390 at 60 s) plus that first cycle — the goal is about 1 MB or less;
- ``merge_cpu_s``: what a cycle that ends in merging the parts of the last
  ``COMPACT_CYCLES`` cycles costs over the others (with ``--cycles`` at least that many);
- ``close_s``: the compaction at the run's end (once per run, not per cycle).

Prints one JSON object (or a summary) and writes it to var/bench_recording.json.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from common.config import Settings  # noqa: E402
from common.settings_file import parse_settings  # noqa: E402
from supervisor.broker.base import Broker  # noqa: E402
from supervisor.broker.stub import StubBroker  # noqa: E402
from supervisor.recording import format as fmt  # noqa: E402
from supervisor.recording.recording_broker import RecordingBroker  # noqa: E402
from supervisor.recording.writer import COMPACT_CYCLES, RecordingWriter  # noqa: E402
from supervisor.runtime.clock import SimClock  # noqa: E402
from supervisor.runtime.offline import run_offline  # noqa: E402

OUT = Path("var/bench_recording.json")
SESSION_S = 390 * 60.0  # a regular session: 09:30-16:00


def settings_for(symbols: int, interval_s: float) -> Settings:
    universe = [f"S{i:04d}" for i in range(symbols)]
    return parse_settings(
        {
            "universe": {"symbols": universe},
            "schedule": {"interval_s": interval_s, "cycle_deadline_s": 600},
            "logging": {"level": "WARNING", "console": False},
        },
        "bench",
        environ={},
    )


def one_run(settings: Settings, cycles: int, interval_s: float, work: Path, record: bool) -> dict:
    """One offline run; its CPU seconds, and the recording's size when ``record``."""
    clock = SimClock(settings.stub.start.timestamp())
    stub = StubBroker(settings.stub, clock.now)
    broker: Broker = stub
    writer = None
    if record:
        writer = RecordingWriter(work / f"rec-{time.monotonic_ns()}")
        broker = RecordingBroker(stub, writer, clock.now)

    busy: list[float] = []  # the recorder's own CPU, cycle by cycle

    def flushed(done: int, _t: float) -> None:  # the cycle's end, as the run's loop does it
        if writer is not None and isinstance(broker, RecordingBroker):
            writer.cycle_ended()  # its buffers to disk, its parts merged every COMPACT_CYCLES
            busy.append(broker.busy_s + writer.busy_s - sum(busy))

    start = clock.now()
    times = [start + i * interval_s for i in range(cycles)]
    journal = work / f"journal-{time.monotonic_ns()}.sqlite"
    cpu = time.process_time()
    run = asyncio.run(run_offline(settings, broker, clock, times, journal, flushed))
    figures: dict[str, Any] = {
        "cpu_s": time.process_time() - cpu,
        "cycles": run.cycles,
        "busy_s": busy,
    }
    if writer is not None:
        began = time.perf_counter()
        writer.close()
        figures["close_s"] = time.perf_counter() - began
        figures["bytes"] = writer.size_bytes()
        figures["rows"] = dict(writer.rows)
        figures["bytes_by_kind"] = {
            kind: (writer.root / fmt.file_name(kind)).stat().st_size for kind in fmt.SCHEMAS
        }
        shutil.rmtree(writer.root)
    journal.unlink(missing_ok=True)
    return figures


def bench(symbols: int, cycles: int, repeat: int, interval_s: float) -> dict[str, Any]:
    settings = settings_for(symbols, interval_s)
    offs: list[dict[str, Any]] = []
    ons: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory(prefix="bench-recording-") as folder:
        work = Path(folder)
        one_run(settings, 2, interval_s, work, False)  # warm-up: imports, caches
        for _ in range(repeat):  # alternated, so a busy spell hits both alike
            offs.append(one_run(settings, cycles, interval_s, work, False))
            ons.append(one_run(settings, cycles, interval_s, work, True))
        first = one_run(settings, 1, interval_s, work, True)  # what a run's start records
    off = statistics.median(r["cpu_s"] / r["cycles"] for r in offs)
    on = statistics.median(r["cpu_s"] / r["cycles"] for r in ons)
    last = ons[-1]
    first_busy = statistics.median(r["busy_s"][0] for r in ons)
    steady_busy = statistics.median(s for r in ons for s in r["busy_s"][1:])
    # the cycles that end in a merge of the parts since the last (the COMPACT_CYCLES-th...)
    merging = [s for r in ons for s in r["busy_s"][COMPACT_CYCLES - 1 :: COMPACT_CYCLES]]
    merge_extra = max(statistics.median(merging) - steady_busy, 0.0) if merging else None
    per_symbol_cycle = (last["bytes"] - first["bytes"]) / (symbols * (last["cycles"] - 1))
    first_cycle = first["bytes"] / symbols
    cycles_per_day = SESSION_S / interval_s
    return {
        "symbols": symbols,
        "cycles": cycles,
        "repeat": repeat,
        "interval_s": interval_s,
        "cpu_s_per_cycle_off": round(off, 4),
        "cpu_s_per_cycle_on": round(on, 4),
        "on_minus_off_cpu_s_per_cycle": round(on - off, 4),
        "recorder_cpu_s_first_cycle": round(first_busy, 4),
        "recorder_cpu_s_per_cycle": round(steady_busy, 4),
        "recorder_share_of_cycle_cpu": round(steady_busy / off, 4) if off else None,
        # a merge of COMPACT_CYCLES cycles' parts, over a cycle's own recording (None when
        # --cycles is fewer than COMPACT_CYCLES: not measured, not counted below)
        "merge_cpu_s": None if merge_extra is None else round(merge_extra, 4),
        # a session's recorder CPU (its first cycle, the rest, its merges, the compaction at
        # the end) over the session's seconds
        "share_of_a_core": round(
            (
                first_busy
                + steady_busy * (cycles_per_day - 1)
                + (merge_extra or 0.0) * cycles_per_day / COMPACT_CYCLES
                + last["close_s"]
            )
            / SESSION_S,
            5,
        ),
        "bytes_per_symbol_cycle": round(per_symbol_cycle, 1),
        "first_cycle_bytes_per_symbol": round(first_cycle),
        "bytes_per_symbol_day": round(first_cycle + per_symbol_cycle * (cycles_per_day - 1)),
        "bytes_by_kind": last["bytes_by_kind"],
        "rows_per_cycle": {k: v // last["cycles"] for k, v in last["rows"].items()},
        "close_s": round(last["close_s"], 3),
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--symbols", type=int, default=1000)
    parser.add_argument("--cycles", type=int, default=10, help="per run, at least 2")
    parser.add_argument("--repeat", type=int, default=2)
    parser.add_argument("--interval", type=float, default=60.0, help="market s between cycles")
    parser.add_argument("--json", action="store_true", help="print the JSON object only")
    parser.add_argument("--out", type=Path, default=OUT)
    args = parser.parse_args()
    figures = bench(args.symbols, args.cycles, args.repeat, args.interval)
    figures["measured"] = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(figures, indent=1) + "\n")
    if args.json:
        print(json.dumps(figures))
    else:
        print(
            f"recorder at {args.symbols} symbols: {figures['recorder_cpu_s_per_cycle']:.3f} CPU s "
            f"a cycle ({figures['recorder_cpu_s_first_cycle']:.2f} s the first): "
            f"{100 * figures['share_of_a_core']:.2f} % of a core at a cycle every "
            f"{args.interval:g} s; {figures['bytes_per_symbol_day'] / 1e6:.2f} MB per "
            f"symbol-day; written to {args.out}"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
