"""Trading and liquid hours in IBKR's contract-details format, and the session clock.

Format: ``20261125:0930-20261125:1600;20261126:CLOSED;...`` in the contract's time zone.
Mode ``always_open`` lists every day as one 24-hour session so that "now" is always inside
(tests run at any hour); holidays are still listed as CLOSED except today, plus one
synthetic holiday a few days ahead so the string always carries a CLOSED day. Mode ``real`` uses
the configured weekday hours, closed on weekends and holidays; on the listed early-close days
the liquid hours end at ``early_close_time`` (13:00) and the trading hours at
``early_close_trading_time`` (17:00), as IBKR lists them (``20261127:0930-20261127:1300``).
Early closes are real-mode only: an always-open day is 24 hours whatever the list says.

Closes drive the order book: ``session_end_after`` is when a DAY order dies, ``expiry_close``
when an option stops trading and is settled; ``trading_day_start`` is where the account's
daily figures (ledger.py) and today's executions begin.
"""

from __future__ import annotations

from datetime import date, datetime, time, timedelta
from zoneinfo import ZoneInfo

from tools.gateway_sim.scenario import SessionSpec


def _parse_range(text: str) -> tuple[time, time]:
    start, end = text.split("-")
    return time.fromisoformat(start), time.fromisoformat(end)


class SessionClock:
    """Answers "is the market open" and renders hours strings for contract details."""

    def __init__(self, spec: SessionSpec) -> None:
        self.spec = spec
        self.zone = ZoneInfo(spec.timezone)
        self.holidays = {_day(h) for h in spec.holidays}
        self.early_closes = {_day(h) for h in spec.early_closes}
        self.liquid = _parse_range(spec.liquid_hours)
        self.trading = _parse_range(spec.trading_hours)
        self.early_liquid_end = time.fromisoformat(spec.early_close_time)
        self.early_trading_end = time.fromisoformat(spec.early_close_trading_time)

    def local(self, ts: float) -> datetime:
        return datetime.fromtimestamp(ts, self.zone)

    def is_trading_day(self, day: date, today: date) -> bool:
        if self.spec.mode == "always_open":
            ahead = self.spec.synthetic_holiday_in_days
            synthetic = ahead is not None and day == today + timedelta(days=ahead)
            return day == today or (day not in self.holidays and not synthetic)
        return day.weekday() < 5 and day not in self.holidays

    def _window(self, day: date, rth: bool) -> tuple[datetime, datetime]:
        if self.spec.mode == "always_open":
            start = datetime.combine(day, time(0, 0), self.zone)
            return start, start + timedelta(days=1)
        begin, end = self.liquid if rth else self.trading
        if day in self.early_closes:  # the session starts as usual and ends early
            end = self.early_liquid_end if rth else self.early_trading_end
        return (datetime.combine(day, begin, self.zone), datetime.combine(day, end, self.zone))

    def hours_string(self, now_ts: float, rth: bool) -> str:
        today = self.local(now_ts).date()
        parts = []
        for offset in range(-1, self.spec.days_listed):
            day = today + timedelta(days=offset)
            stamp = day.strftime("%Y%m%d")
            if not self.is_trading_day(day, today):
                parts.append(f"{stamp}:CLOSED")
                continue
            start, end = self._window(day, rth)
            parts.append(f"{start:%Y%m%d:%H%M}-{end:%Y%m%d:%H%M}")
        return ";".join(parts)

    def is_open(self, ts: float, rth: bool, today: date | None = None) -> bool:
        local = self.local(ts)
        anchor = today or local.date()
        if not self.is_trading_day(local.date(), anchor):
            return False
        start, end = self._window(local.date(), rth)
        return start <= local < end

    def session_start(self, ts: float) -> float:
        """Start of the current (or last) regular session: for open/close/volume ticks."""
        local = self.local(ts)
        day = local.date()
        for _ in range(15):
            if self.is_trading_day(day, local.date()):
                start, _end = self._window(day, rth=True)
                if start.timestamp() <= ts:
                    return start.timestamp()
            day -= timedelta(days=1)
        return ts - 86_400.0

    def trading_day_start(self, ts: float) -> float:
        """When the trading day ``ts`` belongs to began: the extended-hours open (04:00) of the
        last trading day that has opened by ``ts`` (always_open: the local midnight). A
        weekend, a holiday or the night before the open still belong to the last trading day.
        The account's daily figures (dailyPnL, realized today, today's executions) count from
        here."""
        day = self.local(ts).date()
        for _ in range(15):
            if self.is_trading_day(day, day):
                start = self._window(day, rth=False)[0].timestamp()
                if start <= ts:
                    return start
            day -= timedelta(days=1)
        return ts - 86_400.0

    def previous_close(self, ts: float) -> float:
        """End of the last regular session that ended before the current one started."""
        start = self.session_start(ts)
        local = self.local(start - 1)
        day = local.date()
        for _ in range(15):
            if self.is_trading_day(day, self.local(ts).date()):
                _start, end = self._window(day, rth=True)
                if end.timestamp() <= start:
                    return end.timestamp()
            day -= timedelta(days=1)
        return start - 3600.0

    def expiry_close(self, day: date) -> float:
        """Epoch seconds when an option expiring on ``day`` stops trading (and is settled):
        the regular close of that day, 13:00 on an early-close day in real mode. Always-open
        mode keeps the regular close time (16:00), the instant its option model always used."""
        if self.spec.mode == "real" and self.is_trading_day(day, day):
            return self._window(day, rth=True)[1].timestamp()
        return datetime.combine(day, self.liquid[1], self.zone).timestamp()

    def session_end_after(self, ts: float, rth: bool) -> float:
        """The end of the first session (regular if ``rth``, else extended) that ends after
        ``ts``: when a DAY order placed at ``ts`` is cancelled. An order placed after the close
        belongs to the next session, as IBKR queues it. Always-open: the local midnight that
        ends the current 24-hour day."""
        local = self.local(ts)
        if self.spec.mode == "always_open":
            return self._window(local.date(), rth)[1].timestamp()
        day = local.date()
        for _ in range(30):  # a month of closed days would be a broken scenario
            if self.is_trading_day(day, day):
                end = self._window(day, rth)[1].timestamp()
                if end > ts:
                    return end
            day += timedelta(days=1)
        return ts + 86_400.0


def _day(stamp: str) -> date:
    return date(int(stamp[:4]), int(stamp[4:6]), int(stamp[6:]))
