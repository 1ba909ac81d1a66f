"""When to try again to start a worker that could not be started (pool.py's spawn path).

A spawn fails for want of a resource the supervisor does not control: file descriptors (a
flood of connections at the process's limit), memory, processes. Giving up would shrink the
pool for good; trying at once, in a loop, would spin while the cause lasts. So a worker that
cannot be started is owed: tried again after SPAWN_RETRY_FIRST_S, doubling each time it fails
again, never more than SPAWN_RETRY_MAX_S apart, for as long as it takes.
"""

from __future__ import annotations

SPAWN_RETRY_FIRST_S = 0.5
SPAWN_RETRY_MAX_S = 30.0


def spawn_retry_in(
    failures: int, first_s: float = SPAWN_RETRY_FIRST_S, max_s: float = SPAWN_RETRY_MAX_S
) -> float:
    """Seconds until the next attempt after ``failures`` (1, 2, …) failed in a row."""
    return min(max_s, first_s * 2.0 ** min(max(failures, 1) - 1, 32))


def spawn_failure_text(owed: int, failures: int, error: BaseException, retry_in_s: float) -> str:
    """What is logged and alerted: the cause, how many workers are missing, what is next."""
    what = f"{owed} worker{'s' if owed != 1 else ''} missing"
    return (
        f"a worker could not be started ({_reason(error)}); {what}, attempt {failures} "
        f"failed, next in {retry_in_s:g}s"
    )


def _reason(error: BaseException) -> str:
    if isinstance(error, OSError) and error.strerror:
        return f"{error.strerror}, errno {error.errno}"
    return f"{type(error).__name__}: {error}"


class Owed:
    """Workers the pool could not start yet: how many, and the attempts that failed (in a
    row, and in all); says what to log, alert and wait after each attempt."""

    def __init__(
        self, first_s: float = SPAWN_RETRY_FIRST_S, max_s: float = SPAWN_RETRY_MAX_S
    ) -> None:
        self.first_s, self.max_s = first_s, max_s
        self.count = 0
        self.streak = 0  # failed attempts since a worker last started
        self.failures = 0  # every failed attempt of the run (worker_spawn_failures_total)

    def failed(self, error: BaseException) -> tuple[str, float, bool]:
        """One more worker owed: (what to say, seconds to the next attempt, whether this
        is the first failure of a streak: alerted then, only logged after)."""
        self.count += 1
        self.streak += 1
        self.failures += 1
        retry_in = spawn_retry_in(self.streak, self.first_s, self.max_s)
        return (
            spawn_failure_text(self.count, self.streak, error, retry_in),
            retry_in,
            (self.streak == 1),
        )

    def started(self, worker_id: int) -> str | None:
        """A worker started: what to say if it ended a streak of failures, else None."""
        if not self.streak:
            return None
        text = (
            f"worker {worker_id} started after {self.streak} failed attempt"
            f"{'s' if self.streak != 1 else ''}; {self.count} still missing"
        )
        self.streak = 0
        return text
