"""Alive is not enough: the pool's watchdog decides which workers are stuck or due a rest.

    every tick (watch_interval): per worker
      the same pipeline step (workers/beat.py) for longer than workers.step_timeout_s
          -> stuck on that symbol: the pool kills it (the respawn path replaces it)
      more than MAX_INBOX_MESSAGES waiting to be written to its inbox -> not reading: killed
      workers.max_tasks_per_worker tasks sent -> retired: no new symbol; a fresh worker is
          started beside it and it is stopped once its symbols are done

As gunicorn's arbiter kills a worker whose heartbeat is too old, CPython's process pool
replaces a worker after ``max_tasks_per_child``. The decisions here are pure: the pool reads
the beats and the clock, these say what follows.
"""

from __future__ import annotations

from dataclasses import dataclass

MAX_INBOX_MESSAGES = 10_000  # a reading worker holds a few; thousands means it reads none
WATCH_MAX_S = 1.0


@dataclass
class StepWatch:
    """The step a worker was last seen in, and since when (the supervisor's clock)."""

    seq: int = 0
    since: float = 0.0


def stuck_on(
    watch: StepWatch, seq: int, symbol: str | None, now: float, timeout_s: float
) -> str | None:
    """The symbol a worker has been computing for longer than ``timeout_s``, or None.
    ``seq``/``symbol`` are its beat as read now; ``watch`` is updated."""
    if seq != watch.seq:
        watch.seq, watch.since = seq, now
        return None
    if symbol is None:  # between steps: waiting for a message is not being stuck
        return None
    return symbol if now - watch.since > timeout_s else None


def watch_interval(timeout_s: float) -> float:
    """Often enough that a stuck step is seen within a quarter of its timeout past it."""
    return min(WATCH_MAX_S, timeout_s / 4)


def overfull(inbox_depth: int) -> bool:
    return inbox_depth > MAX_INBOX_MESSAGES


def due_for_retirement(tasks: int, max_tasks: int) -> bool:
    return 0 < max_tasks <= tasks
