"""Logging for every process, written by the supervisor alone.

    worker processes --their own channel (the pool)--> LogService.handle --+
    supervisor loggers ------------------------------------------------------+--> JSON lines
                                                                             +--> console text

Every decision (signal, skip reason, intent, risk verdict) is one record whose ``event``
attribute names it; its other ``extra`` fields become JSON keys.
"""

from __future__ import annotations

import logging
import logging.handlers
import sys
from pathlib import Path
from typing import TextIO

from common.config import LoggingSettings

try:  # python-json-logger >= 3 moved the formatter
    from pythonjsonlogger.json import JsonFormatter
except ImportError:  # pragma: no cover - older releases
    from pythonjsonlogger.jsonlogger import JsonFormatter  # type: ignore[no-redef,unused-ignore]

CONSOLE_FORMAT = "%(asctime)s %(levelname)-7s %(processName)s %(name)s: %(message)s"
JSON_FIELDS = "%(asctime)s %(levelname)s %(name)s %(processName)s %(process)d %(message)s"


class LogService:
    """Owns the handlers and the listener that drains the workers' log queue."""

    def __init__(self, settings: LoggingSettings, console: TextIO | None) -> None:
        self.handlers: list[logging.Handler] = []
        if settings.json_path:
            path = Path(settings.json_path)
            path.parent.mkdir(parents=True, exist_ok=True)
            file_handler = logging.handlers.RotatingFileHandler(
                path, maxBytes=50_000_000, backupCount=5, encoding="utf-8"
            )
            file_handler.setFormatter(JsonFormatter(JSON_FIELDS))
            self.handlers.append(file_handler)
        if settings.console:
            console_handler = logging.StreamHandler(console or sys.stderr)
            console_handler.setFormatter(logging.Formatter(CONSOLE_FORMAT, "%H:%M:%S"))
            self.handlers.append(console_handler)
        root = logging.getLogger()
        self._saved = (root.handlers[:], root.level)
        root.handlers[:] = self.handlers
        root.setLevel(settings.level)
        if settings.level != "DEBUG":  # ib_insync narrates every order and status at INFO
            logging.getLogger("ib_insync").setLevel(logging.WARNING)

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
