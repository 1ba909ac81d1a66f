"""Each symbol's regular session of a day, from the one place that should know.

    broker.regular_hours(symbol)  IBKR's liquid hours: the days it lists, early closes and
                                  holidays included (refreshed by the broker once a day)
    exchange calendar             every other day, and for venues that publish no hours
                                  (the stub): NYSE's sessions, or plain weekdays

The risk step's entry window, a same-day expiry's time left, every exit before an expiry and
the moment a held position settles are all read from here, per symbol.
"""

from __future__ import annotations

import logging
from datetime import date

from common.calendar import ExchangeCalendar, Session, TradingHours, parse_expiry, trading_day
from supervisor.broker.base import Broker, BrokerError

log = logging.getLogger("supervisor.trading.sessions")

MAX_REMEMBERED = 20_000  # (symbol, day) answers; a long run forgets the oldest by clearing


class SessionBook:
    def __init__(self, broker: Broker, calendar: ExchangeCalendar) -> None:
        self.broker = broker
        self.calendar = calendar
        self._hours: dict[str, tuple[date, TradingHours | None]] = {}
        self._sessions: dict[tuple[str, date], Session | None] = {}

    def day_of(self, ts: float) -> date:
        """The exchange's trading day of ``ts``."""
        return trading_day(ts, self.calendar.tz)

    async def session(self, symbol: str, day: date, now_ts: float) -> Session | None:
        """``symbol``'s regular session on ``day``; None when it does not trade that day."""
        key = (symbol, day)
        if key not in self._sessions:
            if len(self._sessions) > MAX_REMEMBERED:
                self._sessions.clear()
            hours = await self._hours_of(symbol, self.day_of(now_ts))
            if hours is not None and hours.lists(day):
                self._sessions[key] = hours.session(day)
            else:
                self._sessions[key] = self.calendar.session(day)
        return self._sessions[key]

    async def today(self, symbol: str, now_ts: float) -> Session | None:
        return await self.session(symbol, self.day_of(now_ts), now_ts)

    async def expiry_close(self, symbol: str, expiry: str, now_ts: float) -> float | None:
        """When the last session of an expiry closes (13:00 on an early-close day)."""
        day = parse_expiry(expiry)
        if day is None:
            return None
        session = await self.session(symbol, day, now_ts)
        return session.close_ts if session is not None else None

    async def _hours_of(self, symbol: str, today: date) -> TradingHours | None:
        known = self._hours.get(symbol)
        if known is not None and known[0] == today:
            return known[1]
        try:
            hours = await self.broker.regular_hours(symbol)
        except BrokerError as exc:  # the exchange calendar still answers
            log.info("hours of %s not available (%s): using the exchange calendar", symbol, exc)
            hours = known[1] if known is not None else None
        self._hours[symbol] = (today, hours)
        return hours
