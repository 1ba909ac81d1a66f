"""Times as a person reads them: a date and a zone, and a wait in the unit that fits.

"next regular open Mon 2026-12-07 09:30 ET, in 55 h" needs no arithmetic from the reader;
"in 2730 min" does. Pure functions, tested without a clock.
"""

from __future__ import annotations

from datetime import datetime
from zoneinfo import ZoneInfo

# The US zones' own abbreviations (EST/EDT) say which half of the year it is; exchange hours
# are quoted as ET, CT ... all year.
GENERIC = {"EST": "ET", "EDT": "ET", "CST": "CT", "CDT": "CT", "MST": "MT", "MDT": "MT"}
GENERIC |= {"PST": "PT", "PDT": "PT"}


def when(ts: float, zone: ZoneInfo) -> str:
    """'Mon 2026-12-07 09:30 ET': epoch seconds as a weekday, a date and a time of day."""
    local = datetime.fromtimestamp(ts, zone)
    name = local.tzname() or zone.key
    return f"{local:%a %Y-%m-%d %H:%M} {GENERIC.get(name, name)}"


def span(seconds: float) -> str:
    """'45 s', '12 min', '55 h' or '9 d': a duration in the largest unit that keeps two
    figures of it (a wait of 2730 minutes reads as 46 h)."""
    seconds = max(0.0, seconds)
    if seconds < 90:
        return f"{seconds:.0f} s"
    if seconds < 90 * 60:
        return f"{seconds / 60:.0f} min"
    if seconds < 96 * 3600:
        return f"{seconds / 3600:.0f} h"
    return f"{seconds / 86_400:.0f} d"


def due(ts: float, now: float, zone: ZoneInfo) -> str:
    """'Mon 2026-12-07 09:30 ET, in 55 h'."""
    return f"{when(ts, zone)}, in {span(ts - now)}"
