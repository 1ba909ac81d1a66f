"""The library layer: the one import of the IB client library, and how its numbers read.

ib_insync where it is installed, ib_async (a drop-in replacement) otherwise. Every other
module of this package takes ``ibi`` from here, so swapping libraries touches one file.
"""

from __future__ import annotations

import logging
import math
import re
from typing import Any

try:
    import ib_insync as ibi
except ImportError:  # pragma: no cover - ib_async is a drop-in replacement where installed
    import ib_async as ibi  # type: ignore[no-redef]



class _SaidByTheLink(logging.Filter):
    """The library logs ERROR for every failed connect ("API connection failed: …", "Make
    sure API port …") and for a reset socket; the link layer says each of these itself, once
    and clearer (a probe every 10 s through a gateway restart is not 18 errors a minute). A
    cancelled connect is our stop during a connect, asked for, not a failure."""

    SAID = ("API connection failed", "Make sure API port", "Connection reset by peer",
            "Peer closed connection")

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
