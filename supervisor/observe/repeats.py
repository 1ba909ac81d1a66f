"""A failure that repeats every sample, said once with a count instead of once per sample.

A read-only metrics folder fails every sample (every 5 s, for days): a WARNING each time
buries everything else in the log. ``Repeated`` logs the first failure of a kind, then only
counts, with a reminder at 10, 100, 1,000 … failures; a failure of another kind is said at
once (with how often the last one happened), and the end of the run of failures is said with
its count.

``PerWindow`` does the same for alerts on a clock: the first of a kind (a risk rule's refusal)
is said at once, the repeats within the window only counted, and the window's end says how many
were held back (once; a quiet window says nothing). Pure: the caller passes the time.
"""

from __future__ import annotations

import logging


class Repeated:
    """One thing that may fail again and again (``what``, e.g. "metrics line not written")."""

    def __init__(self, logger: logging.Logger, what: str, *, level: int = logging.WARNING) -> None:
        self.logger = logger
        self.what = what
        self.level = level
        self.kind: str | None = None  # the failing run's reason; None while all is well
        self.count = 0  # failures in the current run
        self.total = 0  # failures ever

    def failed(self, reason: str, hint: str = "") -> bool:
        """Count a failure; True when this one was logged."""
        self.total += 1
        if reason != self.kind:
            before = (
                f" (the previous failure, {self.kind}, happened {self.count} time(s))"
                if self.kind is not None
                else ""
            )
            self.kind, self.count = reason, 1
            self.logger.log(
                self.level,
                "%s: %s%s%s; repeats are counted, not logged",
                self.what,
                reason,
                f"; {hint}" if hint else "",
                before,
            )
            return True
        self.count += 1
        if _round(self.count):
            self.logger.log(
                self.level,
                "%s: still failing (%s), %d times in a row",
                self.what,
                reason,
                self.count,
            )
            return True
        return False

    def succeeded(self) -> None:
        """The thing works again: say after how many failures, once."""
        if self.kind is not None:
            self.logger.log(
                self.level,
                "%s: works again after %d failure(s) (%s)",
                self.what,
                self.count,
                self.kind,
            )
            self.kind, self.count = None, 0


class PerWindow:
    """At most one saying per key per ``every_s``, with the count of those held back."""

    def __init__(self, every_s: float) -> None:
        self.every_s = every_s
        self._windows: dict[str, tuple[float, int]] = {}  # key -> (said at, held back since)

    def note(self, key: str, now: float) -> int | None:
        """One more of ``key`` at ``now``: None when it is only counted; else say it now, with
        the number held back in the window before (0: none, or the window's end said them)."""
        said_at, held = self._windows.get(key, (None, 0))
        if said_at is not None and now - said_at < self.every_s:
            self._windows[key] = (said_at, held + 1)
            return None
        self._windows[key] = (now, 0)
        return held

    def due(self, now: float) -> dict[str, int]:
        """The windows over by ``now`` that held some back: key -> how many (said once: the
        next of the key is said at once)."""
        over = {k: held for k, (at, held) in self._windows.items() if now - at >= self.every_s}
        for key in over:
            del self._windows[key]
        return {k: held for k, held in over.items() if held}


def os_reason(exc: OSError) -> str:
    """'PermissionError: Permission denied': the same for every sample (no path, no errno
    text that varies), so repeats are recognised as one kind."""
    return f"{type(exc).__name__}: {exc.strerror}" if exc.strerror else repr(exc)


def _round(count: int) -> bool:
    """10, 100, 1000, …: a reminder that grows rarer as the failure goes on."""
    while count >= 10 and count % 10 == 0:
        count //= 10
    return count == 1
