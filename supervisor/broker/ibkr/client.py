"""The library layer: the one import of the IB client library, and how its numbers read.

ib_insync where it is installed, ib_async (its maintained fork, a drop-in replacement)
otherwise or where ``IBKR_CLIENT_LIB=ib_async`` says so. Every other module of this package,
and the tests (tests/ibclient.py), take ``ibi`` from here: swapping libraries touches one file.
"""

from __future__ import annotations

import importlib
import logging
import math
import os
import re
from types import ModuleType
from typing import Any

LIBRARIES = ("ib_insync", "ib_async")
CHOICE_ENV = "IBKR_CLIENT_LIB"  # ib_insync | ib_async: which one, when both are installed


def _import_library() -> ModuleType:
    wanted = os.environ.get(CHOICE_ENV, "")
    if wanted and wanted not in LIBRARIES:
        raise ImportError(f"{CHOICE_ENV}={wanted!r}: expected one of {', '.join(LIBRARIES)}")
    for name in (wanted,) if wanted else LIBRARIES:
        try:
            return importlib.import_module(name)
        except ImportError:
            continue
    raise ImportError("no IB client library: pip install ib_insync (or ib_async)")


ibi: Any = _import_library()


class _SaidByTheLink(logging.Filter):
    """The library logs ERROR for every failed connect ("API connection failed: …", "Make
    sure API port …") and for a reset socket; the link layer says each of these itself, once
    and clearer (a probe every 10 s through a gateway restart is not 18 errors a minute). A
    cancelled connect is our stop during a connect, asked for, not a failure."""

    SAID = (
        "API connection failed",
        "Make sure API port",
        "Connection reset by peer",
        "Peer closed connection",
    )

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        return not any(said in message for said in self.SAID)


class _EchoedErrors(logging.Filter):
    """The library echoes every error event as ERROR ("Error 1102, reqId -1: … restored"):
    the link layer logs each code once, at the level it deserves (supervisor/broker/ibkr/
    errors.py: a notice, a symbol's problem, the connection)."""

    def filter(self, record: logging.LogRecord) -> bool:
        return not ECHOED_ERROR.match(record.getMessage())


ECHOED_ERROR = re.compile(r"Error -?\d+, reqId -?\d+")
logging.getLogger(f"{ibi.__name__}.client").addFilter(_SaidByTheLink())
logging.getLogger(f"{ibi.__name__}.wrapper").addFilter(_EchoedErrors())

# IBKR's "no value" for a double field: the largest float, sent as a number.
UNSET_DOUBLE = 1.7976931348623157e308
NAN = math.nan


def num(value: Any) -> float:
    """A float from an IBKR number or numeric string; NaN for empty and 'unset' values."""
    try:
        x = float(value)
    except (TypeError, ValueError):
        return NAN
    return NAN if abs(x) >= UNSET_DOUBLE else x


def or_nan(value: float | None) -> float:
    return NAN if value is None else float(value)


__all__ = ["NAN", "UNSET_DOUBLE", "ibi", "num", "or_nan"]
