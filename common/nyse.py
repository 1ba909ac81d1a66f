"""NYSE's trading days by its own rules (NYSE Rule 7.2): the holidays, the 13:00 early closes,
and the closures no rule foresees (national days of mourning), for any year from 2015.

    holidays(year)     {day: name} of the weekdays the exchange is closed
    early_closes(year) the days it closes at 13:00 ET
    hours(day)         (open, close) local times of a day's session, None when closed

Stdlib only, no clock read. Checked day by day against exchange_calendars' XNYS for 2015-2035
(tests/data/xnys_2015_2035.txt). Written here rather than imported: exchange_calendars brings
pandas, whose datetime subclass cannot load under a shifted clock (tools/at) and adds tens of
MB to every process that asks for a session.
"""

from __future__ import annotations

from datetime import date, time, timedelta
from functools import lru_cache

OPEN, CLOSE, EARLY_CLOSE = time(9, 30), time(16, 0), time(13, 0)
FIRST_YEAR = 2015
MON, TUE, WED, THU, FRI, SAT, SUN = range(7)

# closures announced for the day, not derivable from any rule
SPECIAL_CLOSURES = {
    date(2018, 12, 5): "National Day of Mourning (George H. W. Bush)",
    date(2025, 1, 9): "National Day of Mourning (Jimmy Carter)",
}


def easter(year: int) -> date:
    """Western Easter Sunday (the anonymous Gregorian computus)."""
    a, b, c = year % 19, year // 100, year % 100
    d, e = divmod(b, 4)
    g = (8 * b + 13) // 25
    h = (19 * a + b - d - g + 15) % 30
    i, k = divmod(c, 4)
    l_ = (32 + 2 * e + 2 * i - h - k) % 7
    m = (a + 11 * h + 22 * l_) // 451
    month, day = divmod(h + l_ - 7 * m + 114, 31)
    return date(year, month, day + 1)


def nth_weekday(year: int, month: int, weekday: int, n: int) -> date:
    """The n-th (1-based; -1 = last) given weekday of a month."""
    if n > 0:
        first = date(year, month, 1)
        return first + timedelta(days=(weekday - first.weekday()) % 7 + 7 * (n - 1))
    last = date(year + (month == 12), month % 12 + 1, 1) - timedelta(days=1)
    return last - timedelta(days=(last.weekday() - weekday) % 7)


def observed(day: date) -> date:
    """A holiday on a Saturday is kept on the Friday before, on a Sunday the Monday after."""
    if day.weekday() == SAT:
        return day - timedelta(days=1)
    if day.weekday() == SUN:
        return day + timedelta(days=1)
    return day


@lru_cache(maxsize=64)
def holidays(year: int) -> dict[date, str]:
    if year < FIRST_YEAR:
        raise ValueError(f"{year}: the NYSE rules here start in {FIRST_YEAR}")
    days = {
        nth_weekday(year, 1, MON, 3): "Martin Luther King Jr. Day",
        nth_weekday(year, 2, MON, 3): "Washington's Birthday",
        easter(year) - timedelta(days=2): "Good Friday",
        nth_weekday(year, 5, MON, -1): "Memorial Day",
        observed(date(year, 7, 4)): "Independence Day",
        nth_weekday(year, 9, MON, 1): "Labor Day",
        nth_weekday(year, 11, THU, 4): "Thanksgiving Day",
        observed(date(year, 12, 25)): "Christmas Day",
    }
    new_year = date(year, 1, 1)
    if new_year.weekday() != SAT:  # a Saturday New Year's Day is not kept on Dec 31
        days[observed(new_year)] = "New Year's Day"
    if year >= 2022:
        days[observed(date(year, 6, 19))] = "Juneteenth"
    days.update({d: name for d, name in SPECIAL_CLOSURES.items() if d.year == year})
    return days


@lru_cache(maxsize=64)
def early_closes(year: int) -> frozenset[date]:
    """The eve of Independence Day and of Christmas when they are Monday to Thursday (a
    Friday eve is the observed holiday itself), and the day after Thanksgiving."""
    days = {nth_weekday(year, 11, THU, 4) + timedelta(days=1)}
    for eve in (date(year, 7, 3), date(year, 12, 24)):
        if eve.weekday() <= THU and eve not in holidays(year):
            days.add(eve)
    return frozenset(days)


def hours(day: date) -> tuple[time, time] | None:
    if day.weekday() >= SAT or day in holidays(day.year):
        return None
    return OPEN, EARLY_CLOSE if day in early_closes(day.year) else CLOSE
