"""The library layer: the one import of the IB client library, and how its numbers read.

ib_insync where it is installed, ib_async (a drop-in replacement) otherwise. Every other
module of this package takes ``ibi`` from here, so swapping libraries touches one file.
"""

from __future__ import annotations

import logging
import math
from typing import Any

try:
    import ib_insync as ibi
except ImportError:  # pragma: no cover - ib_async is a drop-in replacement where installed
    import ib_async as ibi  # type: ignore[no-redef]



class _NotAFailure(logging.Filter):
    """The library logs ERROR "API connection failed: CancelledError()" when a connect is
    cancelled: that is our stop during a connect, asked for, not a failure."""

    def filter(self, record: logging.LogRecord) -> bool:
        return "CancelledError" not in record.getMessage()


logging.getLogger(f"{ibi.__name__}.client").addFilter(_NotAFailure())

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
