"""What the running bot tells the person watching it: progress, heartbeats, the last word.

    cycle line + progress(" · 1823/2000, ETA 1m12s")  --> console
    heartbeats(healthy?) every alerts.heartbeat_interval_s --> Alerter.heartbeat (GET)
    stopped_text(exit code, cycles)                    --> the "stop"/"exit" alert
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable

from supervisor import exitcodes
from supervisor.observe.alerts import Alerter
from supervisor.runtime.waits import pause


def progress(done: int, planned: int, elapsed_s: float) -> str:
    """`` · done/planned, ETA …`` for a run of planned length, else nothing."""
    if not planned:
        return ""
    left_s = elapsed_s / max(done, 1) * max(planned - done, 0)
    return f" · {done}/{planned}, ETA {duration(left_s)}"


def duration(seconds: float) -> str:
    seconds = max(0, round(seconds))
    hours, rest = divmod(seconds, 3600)
    minutes, secs = divmod(rest, 60)
    if hours:
        return f"{hours}h{minutes:02d}m"
    return f"{minutes}m{secs:02d}s" if minutes else f"{secs}s"


def stopped_text(code: int, cycles: int) -> str:
    return f"bot {exitcodes.NAMES.get(code, 'exited')} after {cycles} cycles (exit {code})"


async def heartbeats(stop: asyncio.Event, alerter: Alerter, healthy: Callable[[], bool],
                     interval_s: float) -> None:
    """The heartbeat URL every ``interval_s`` while ``healthy()``, market open or closed: a
    dead-man monitor then fires only when something is wrong, never every night."""
    while not stop.is_set():
        if healthy():
            alerter.heartbeat()
        await pause(stop, interval_s)
