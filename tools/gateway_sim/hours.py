"""Trading and liquid hours in IBKR's contract-details format, and the session clock.

Format: ``20261125:0930-20261125:1600;20261126:CLOSED;...`` in the contract's time zone.
Mode ``always_open`` lists every day as one 24-hour session so that "now" is always inside
(tests run at any hour); holidays are still listed as CLOSED except today, plus one
synthetic holiday a few days ahead so the string always carries a CLOSED day. Mode ``real`` uses
the configured weekday hours, closed on weekends and holidays.
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
        self.holidays = {date(int(h[:4]), int(h[4:6]), int(h[6:])) for h in spec.holidays}
        self.liquid = _parse_range(spec.liquid_hours)
        self.trading = _parse_range(spec.trading_hours)

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
        """Epoch seconds of 16:00 local on an expiry date."""
        return datetime.combine(day, time(16, 0), self.zone).timestamp()
