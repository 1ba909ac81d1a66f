"""Named market moments: every test that meets a market pins its session to one of these.

A failure then replays exactly, on any day the suite runs, and a test that needs a Friday
close or a holiday says so by name. All instants are US/Eastern wall times with their offset
written out (EST -05:00 from 2026-11-01, EDT -04:00 from 2027-03-14).
"""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

EST = timezone(timedelta(hours=-5))
EDT = timezone(timedelta(hours=-4))

# The stub's shipped session (configs/settings.yaml stub.start): Thursday 2026-01-08 10:30
STUB_SESSION = datetime(2026, 1, 8, 10, 30, tzinfo=EST)
# A plain trading day: Tuesday 2026-12-01, mid-morning (the default scenario's session)
TUESDAY_MORNING = datetime(2026, 12, 1, 10, 30, tzinfo=EST)
# The same Tuesday half an hour into the session (QQQ then sits on a no-greeks quirk strike)
TUESDAY_1000 = datetime(2026, 12, 1, 10, 0, tzinfo=EST)
# The same Tuesday two hours, then one hour before the close: entries until 15:45, then the
# close at 16:00
TUESDAY_1400 = datetime(2026, 12, 1, 14, 0, tzinfo=EST)
TUESDAY_1500 = datetime(2026, 12, 1, 15, 0, tzinfo=EST)
TUESDAY_CLOSE = datetime(2026, 12, 1, 16, 0, tzinfo=EST)
# The same Tuesday before the pre-market opens
TUESDAY_NIGHT = datetime(2026, 12, 1, 3, 30, tzinfo=EST)
# Thursday 2026-12-03 at 11:00, the day before a weekly expiry: already Friday in Tokyo
THURSDAY_1100 = datetime(2026, 12, 3, 11, 0, tzinfo=EST)
# Friday 2026-12-04: a weekly expiry, minutes before the close
FRIDAY_1545 = datetime(2026, 12, 4, 15, 45, tzinfo=EST)
FRIDAY_1550 = datetime(2026, 12, 4, 15, 50, tzinfo=EST)
FRIDAY_1555 = datetime(2026, 12, 4, 15, 55, tzinfo=EST)
FRIDAY_1558 = datetime(2026, 12, 4, 15, 58, tzinfo=EST)
# The weekend between: markets closed
SATURDAY_NOON = datetime(2026, 12, 5, 12, 0, tzinfo=EST)
# Monday 2026-12-07 one minute after the open, after a weekend
MONDAY_0931 = datetime(2026, 12, 7, 9, 31, tzinfo=EST)
# Christmas Day 2026 (a Friday): NYSE closed
CHRISTMAS = datetime(2026, 12, 25, 12, 0, tzinfo=EST)
# The day after Thanksgiving 2026: NYSE closes at 13:00
EARLY_CLOSE_DAY = datetime(2026, 11, 27, 12, 30, tzinfo=EST)
# Monday 2026-11-02, the first session after clocks fell back (Sunday 2026-11-01 02:00 EDT)
AFTER_FALL_BACK = datetime(2026, 11, 2, 9, 45, tzinfo=EST)
# Monday 2027-03-15, the first session after clocks sprang forward (Sunday 2027-03-14)
AFTER_SPRING_FORWARD = datetime(2027, 3, 15, 9, 45, tzinfo=EDT)
# Wednesday 2026-11-25: the session before the Thanksgiving holiday
DAY_BEFORE_THANKSGIVING = datetime(2026, 11, 25, 11, 0, tzinfo=EST)


def stamp(moment: datetime) -> str:
    """YYYYMMDD of a moment in its own zone (IBKR's date format)."""
    return moment.strftime("%Y%m%d")
