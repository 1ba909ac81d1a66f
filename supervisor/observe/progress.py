"""A progress bar for long runs on a terminal (``phases``: its cycles and its soak).

A soak of 2,000 cycles printed 2,000 cycle lines that scrolled everything else away. On a
terminal (stderr is a TTY) one line is redrawn in place instead; each cycle line still goes to
the JSON log (event ``cycle_line``). Anywhere else (a pipe, a file, CI) the lines are printed
as before. No dependency: one line of text and a carriage return is all a bar needs.
"""

from __future__ import annotations

import logging
import shutil
import time
from collections.abc import Callable
from typing import TextIO

from common.timetext import span

log = logging.getLogger("supervisor.observe.progress")


def bar_text(label: str, done: int, fraction: float | None, eta_s: float | None, width: int) -> str:
    """'phase3 [########------------]  40% 800 cycles, ETA 12 min' fitted to ``width``;
    without a planned length (``fraction`` None) only the count."""
    count = f"{done:,} cycle" + ("" if done == 1 else "s")
    if fraction is None:
        return f"{label} {count}"[:width]
    fraction = min(max(fraction, 0.0), 1.0)
    tail = f" {fraction:4.0%} {count}" + (f", ETA {span(eta_s)}" if eta_s is not None else "")
    room = max(width - len(label) - len(tail) - 3, 0)
    filled = round(room * fraction)
    return f"{label} [{'#' * filled}{'-' * (room - filled)}]{tail}"[:width]


class ProgressBar:
    """``echo`` for a run of ``cycles`` cycles or ``seconds`` seconds (0: not planned)."""

    def __init__(
        self,
        label: str,
        stream: TextIO,
        *,
        cycles: int = 0,
        seconds: float = 0.0,
        now: Callable[[], float] = time.monotonic,
    ) -> None:
        self.label, self.stream = label, stream
        self.cycles, self.seconds, self.now = cycles, seconds, now
        self.started = now()
        self.done = 0
        self.closed = False

    def fraction(self) -> float | None:
        elapsed = self.now() - self.started
        shares = []
        if self.cycles:
            shares.append(self.done / self.cycles)
        if self.seconds:
            shares.append(elapsed / self.seconds)
        return max(shares) if shares else None  # whichever limit ends the run first

    def echo(self, line: str) -> None:
        """A cycle's line: to the log, and the bar redrawn."""
        self.done += 1
        log.info("%s", line, extra={"event": "cycle_line"})
        self.draw()

    def draw(self) -> None:
        fraction = self.fraction()
        elapsed = self.now() - self.started
        eta = elapsed / fraction - elapsed if fraction else None
        width = shutil.get_terminal_size((80, 24)).columns - 1
        self.stream.write("\r" + bar_text(self.label, self.done, fraction, eta, width) + "\x1b[K")
        self.stream.flush()

    def close(self) -> None:
        """The bar's line ended, so what is printed next starts on a line of its own; once
        (the run's end closes it before its market is shut, and a failure closes it again)."""
        if self.done and not self.closed:
            self.stream.write("\n")
            self.stream.flush()
        self.closed = True


def cycle_echo(
    label: str, stream: TextIO, say: Callable[[str], None], *, cycles: int = 0, seconds: float = 0.0
) -> tuple[Callable[[str], None], ProgressBar | None]:
    """A bar on a terminal, else ``say`` for each line (and no bar)."""
    if not stream.isatty():
        return say, None
    bar = ProgressBar(label, stream, cycles=cycles, seconds=seconds)
    return bar.echo, bar
