"""What the metrics say about the run itself: its planned length, how it ended, and the
thresholds a verdict was given with — so a soak cannot pass by stopping early, and any later
``soak_report.py`` over the same file judges with the same limits.

The supervisor adds ``"run"`` to every metrics record and writes one last record at exit::

    "run": {"pid": 100, "cycles_done": 1823, "planned_cycles": 2000, "planned_s": 0,
            "ended": "stopped" | absent, "exit_code": 0, "by_signal": false}

``phases`` appends ``{"ts": …, "thresholds": {…}}`` once it has judged.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class RunLength:
    cycles: int  # cycles completed, counted by the runs themselves
    incomplete: str | None  # why the run is not a whole soak; None when it is


def run_length(records: list[dict[str, Any]]) -> RunLength | None:
    """The runs' own account (None: metrics written without run records)."""
    runs: dict[int, dict[str, Any]] = {}
    for record in records:
        run = record.get("run")
        if isinstance(run, dict) and isinstance(run.get("pid"), int):
            runs[run["pid"]] = run  # the last word of each supervisor process
    if not runs:
        return None
    cycles = sum(int(r.get("cycles_done") or 0) for r in runs.values())
    last = list(runs.values())[-1]
    return RunLength(cycles, _incomplete(last))


def _incomplete(run: dict[str, Any]) -> str | None:
    done, planned = int(run.get("cycles_done") or 0), int(run.get("planned_cycles") or 0)
    if "ended" not in run:
        return f"the run's end was never recorded (killed?) after {done} cycles"
    if run.get("exit_code"):
        return f"the run ended with exit code {run['exit_code']} after {done} cycles"
    if planned and done < planned:
        how = "stopped by a signal" if run.get("by_signal") else "ended"
        return f"{how} after {done} of {planned} planned cycles"
    if not planned and run.get("planned_s") and run.get("by_signal"):
        return f"stopped by a signal before its planned {run['planned_s']:g} s"
    return None


def recorded_thresholds(records: list[dict[str, Any]]) -> dict[str, float] | None:
    """The thresholds the last verdict over this file was given with, if one was written."""
    for record in reversed(records):
        if isinstance(record.get("thresholds"), dict):
            return dict(record["thresholds"])
    return None
