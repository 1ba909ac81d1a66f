"""Logging for every process, written by the supervisor alone.

    worker processes --their own channel (the pool)--> LogService.handle --+
    supervisor loggers ------------------------------------------------------+--> JSON lines
                                                                             +--> console text

Every decision (signal, skip reason, intent, risk verdict) is one record whose ``event``
attribute names it; its other ``extra`` fields become JSON keys.
"""

from __future__ import annotations

import copy
import logging
import logging.handlers
import math
import sys
from pathlib import Path
from typing import TextIO

from common.config import LoggingSettings
from supervisor.observe.refusals import RefusalRepeats

try:  # python-json-logger >= 3 moved the formatter
    from pythonjsonlogger.json import JsonFormatter
except ImportError:  # pragma: no cover - older releases
    from pythonjsonlogger.jsonlogger import JsonFormatter  # type: ignore[no-redef,unused-ignore]

CONSOLE_FORMAT = "%(asctime)s %(levelname)-7s %(processName)s %(name)s: %(message)s"
JSON_FIELDS = "%(asctime)s %(levelname)s %(name)s %(processName)s %(process)d %(message)s"


class LogPathError(Exception):
    """The JSON log file cannot be opened: a user mistake in logging.json_path."""


class _LogFile(logging.handlers.RotatingFileHandler):
    """A log file whose write errors (a full disk) are said once on stderr, then counted:
    logging's default prints a traceback for every record."""

    failures = 0

    def handleError(self, record: logging.LogRecord) -> None:  # noqa: N802 - logging's API
        self.failures += 1
        if self.failures == 1:
            sys.stderr.write(
                f"cannot write the log file {self.baseFilename}: "
                f"{sys.exc_info()[1]}; its later lines are lost\n"
            )

    def flush(self) -> None:
        try:
            super().flush()
        except (OSError, ValueError):
            self.handleError(None)  # type: ignore[arg-type]  # no record: a flush

    def close(self) -> None:
        try:
            super().close()
        except (OSError, ValueError):
            self.handleError(None)  # type: ignore[arg-type]


def tidy(value: float) -> float:
    """``value`` rounded to 12 significant digits: what a sum of prices leaves in the last
    bits (609.0699999999999) goes, the value itself stays (609.07)."""
    return float(f"{value:.12g}") if math.isfinite(value) else value


class TidyFloats(logging.Filter):
    """A float argument shown with %s prints its binary noise; every handler gets it tidied
    (a %.2f or %g of it is unchanged)."""

    def filter(self, record: logging.LogRecord) -> bool:
        args = record.args
        if isinstance(args, tuple) and any(type(a) is float for a in args):
            record.args = tuple(tidy(a) if type(a) is float else a for a in args)
        return True


class _Console(logging.StreamHandler[TextIO]):
    """The console: a refusal repeated cycle after cycle is shown once, then counted."""

    def __init__(self, stream: TextIO) -> None:
        super().__init__(stream)
        self.repeats = RefusalRepeats()

    def emit(self, record: logging.LogRecord) -> None:
        note = self.repeats.note(record)
        if note is None:
            return
        if note:  # a copy: the other handlers see the record as it was logged
            record = copy.copy(record)
            record.msg, record.args = f"{record.getMessage()} [{note}]", None
        super().emit(record)


class LogService:
    """Owns the handlers and the listener that drains the workers' log queue."""

    def __init__(self, settings: LoggingSettings, console: TextIO | None) -> None:
        self.handlers: list[logging.Handler] = []
        if settings.json_path:
            path = Path(settings.json_path)
            try:
                path.parent.mkdir(parents=True, exist_ok=True)
                file_handler: logging.Handler = _LogFile(
                    path, maxBytes=50_000_000, backupCount=5, encoding="utf-8"
                )
            except OSError as exc:
                raise LogPathError(
                    f"logging.json_path: cannot write the log file {path}: {exc.strerror or exc}"
                ) from None
            file_handler.setFormatter(JsonFormatter(JSON_FIELDS))
            self.handlers.append(file_handler)
        if settings.console:
            console_handler = _Console(console or sys.stderr)
            console_handler.setFormatter(logging.Formatter(CONSOLE_FORMAT, "%H:%M:%S"))
            self.handlers.append(console_handler)
        for handler in self.handlers:
            handler.addFilter(TidyFloats())
        root = logging.getLogger()
        self._saved = (root.handlers[:], root.level)
        root.handlers[:] = self.handlers
        root.setLevel(settings.level)
        if settings.level != "DEBUG":  # both IB libraries narrate every order at INFO
            for library in ("ib_insync", "ib_async"):
                logging.getLogger(library).setLevel(logging.WARNING)

    def handle(self, record: logging.LogRecord) -> None:
        """A worker's record, as if it had been logged here (each handler's level applies)."""
        for handler in self.handlers:
            if record.levelno >= handler.level:
                handler.handle(record)

    def close(self) -> None:
        """Restore the root logger and close the files."""
        root = logging.getLogger()
        root.handlers[:], level = self._saved
        root.setLevel(level)
        for handler in self.handlers:
            handler.close()
