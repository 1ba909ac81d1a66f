"""reqHistoricalData / cancelHistoricalData: bars from the deterministic price paths.

endDateTime "" means now (the last bar is the partial current one); explicit ends are
``YYYYMMDD HH:MM:SS [zone]`` or ``YYYYMMDD-HH:MM:SS`` (UTC). Durations ``N S|D|W|M|Y``; bar
sizes from 1 min to 1 day. formatDate 1 gives ``YYYYMMDD HH:MM:SS zone`` (daily: ``YYYYMMDD``),
2 gives epoch seconds. With pacing switched on (``rules.historical_pacing``), IBKR's limits
hold: violations get error 162 (rules.py; a BID_ASK request counts twice) and a request beyond
``rules.hist_max_open`` (50) of the connection's still unanswered ones gets 322, as IBKR's
"Only 50 simultaneous API historical data requests allowed". The ``historical_refused``
fault answers a symbol's requests with 162 and a text (default: no market-data permissions).
"""

from __future__ import annotations

import re
from datetime import UTC, datetime
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from tools.gateway_sim import outgoing as out
from tools.gateway_sim.codec import ContractFields, FieldReader
from tools.gateway_sim.instruments import Instrument
from tools.gateway_sim.pricepath import Bar
from tools.gateway_sim.scenario import HISTORICAL_REFUSED_TEXT
from tools.gateway_sim.session import Handler, Session

DURATION_UNITS = {"S": 1, "D": 86_400, "W": 7 * 86_400, "M": 30 * 86_400, "Y": 365 * 86_400}
BAR_UNITS = {"min": 60, "mins": 60, "hour": 3600, "hours": 3600, "day": 86_400}
MAX_MINUTES = 400_000
_BAR = re.compile(r"^(\d+)\s+(min|mins|hour|hours|day)$")
_DURATION = re.compile(r"^(\d+)\s+([SDWMY])$")


class BadRequest(ValueError):
    """A historical request the gateway would reject (error 321)."""


def parse_bar_size(text: str) -> int:
    match = _BAR.match(text.strip().lower())
    if not match:
        raise BadRequest(f"Historical data bar size setting is invalid: {text!r}")
    seconds = int(match.group(1)) * BAR_UNITS[match.group(2)]
    if seconds > 86_400 or 86_400 % seconds:
        raise BadRequest(f"Historical data bar size setting is invalid: {text!r}")
    return seconds


def parse_duration(text: str) -> int:
    match = _DURATION.match(text.strip().upper())
    if not match or int(match.group(1)) <= 0:
        raise BadRequest(f"Invalid duration: {text!r}")
    return int(match.group(1)) * DURATION_UNITS[match.group(2)]


def parse_end(text: str, now: float, default_zone: ZoneInfo) -> float:
    raw = text.strip()
    if not raw:
        return now
    try:
        if "-" in raw[:9] and len(raw) >= 17 and raw[8] == "-":
            stamp = datetime.strptime(raw[:17], "%Y%m%d-%H:%M:%S")
            return stamp.replace(tzinfo=UTC).timestamp()
        day, clock, *zone = raw.split()
        stamp = datetime.strptime(f"{day} {clock}", "%Y%m%d %H:%M:%S")
        tz = ZoneInfo(zone[0]) if zone and zone[0] != "UTC" else (UTC if zone else default_zone)
        return stamp.replace(tzinfo=tz).timestamp()
    except (ValueError, ZoneInfoNotFoundError) as exc:
        raise BadRequest(f"Invalid end date/time: {text!r}") from exc


def req_historical_data(s: Session, r: FieldReader) -> None:
    req_id = r.integer()
    contract = r.contract()
    r.skip()  # includeExpired
    end_text, bar_text, duration_text = r.text(), r.text(), r.text()
    use_rth, what, format_date = r.flag(), r.text().upper(), r.integer(1)
    if contract.sec_type == "BAG":
        r.skip(4 * r.integer())
    s.server.counters.bump("historical_requests")
    identity = (contract, end_text, bar_text, duration_text, use_rth, what)
    rules = s.server.scenario.rules
    if rules.historical_pacing and len(s.pending_history) >= rules.hist_max_open:
        cause = f"Only {rules.hist_max_open} simultaneous API historical data requests allowed."
        s.error(req_id, 322, f"Error processing request.-'bX' : cause - {cause}")
        return
    reason = s.server.hist_pacing.check(
        identity,
        (contract.con_id, contract.symbol, contract.sec_type, contract.exchange, what),
        weight=2 if what == "BID_ASK" else 1,
    )
    if reason:
        s.error(req_id, 162, f"{out.ERROR_TEXT[162]} ({reason})")
        return
    task = s.spawn(
        _answer(
            s, req_id, contract, (end_text, bar_text, duration_text), use_rth, what, format_date
        )
    )
    s.pending_history[req_id] = task
    task.add_done_callback(lambda _t: s.pending_history.pop(req_id, None))


async def _answer(
    s: Session,
    req_id: int,
    contract: ContractFields,
    texts: tuple[str, str, str],
    use_rth: bool,
    what: str,
    format_date: int,
) -> None:
    await s.data_ready("historical")
    market = s.server.market
    found = market.book.resolve(contract, market.now())
    if len(found) != 1 or s.fault_state("no_security_definition", found[0]):
        s.error(req_id, 200, f"{out.ERROR_TEXT[200]} ({contract.describe()})")
        return
    inst = found[0]
    if s.fault_state("historical_never_answers", inst):
        return
    refused = s.fault_state("historical_refused", inst)
    if refused is not None:
        text = refused.message or HISTORICAL_REFUSED_TEXT
        s.error(req_id, 162, f"Historical Market Data Service error message:{text}")
        return
    now = market.now()
    try:
        end = parse_end(texts[0], now, market.clock.zone)
        bar_s, duration_s = parse_bar_size(texts[1]), parse_duration(texts[2])
        if duration_s / 60 > MAX_MINUTES:
            raise BadRequest("requested too much data")
    except BadRequest as exc:
        s.error(req_id, 321, f"Error validating request.-'bX' : cause - {exc}")
        return
    bars = market.bars(inst, min(end, now), duration_s, bar_s, use_rth, now)
    if what not in ("TRADES", "ADJUSTED_LAST"):
        bars = [Bar(b.start, b.open, b.high, b.low, b.close, -1, -1.0, -1) for b in bars]
    _send_bars(s, req_id, inst, bars, bar_s, format_date, (min(end, now) - duration_s, end))


def _send_bars(
    s: Session,
    req_id: int,
    inst: Instrument,
    bars: list[Bar],
    bar_s: int,
    format_date: int,
    window: tuple[float, float],
) -> None:
    clock = s.server.clock
    zone = s.server.scenario.session.timezone

    def stamp(ts: float, daily: bool) -> str:
        local = clock.local(ts)
        if daily:
            return f"{local:%Y%m%d}"
        return str(int(ts)) if format_date == 2 else f"{local:%Y%m%d %H:%M:%S} {zone}"

    daily = bar_s >= 86_400
    dates = [stamp(b.start, daily) for b in bars]
    start_text, end_text = (f"{clock.local(t):%Y%m%d %H:%M:%S}" for t in window)
    s.send(out.historical_data(req_id, start_text, end_text, bars, dates))
    s.server.counters.bump("bars_sent", len(bars))


def cancel_historical_data(s: Session, r: FieldReader) -> None:
    r.skip()
    req_id = r.integer()
    task = s.pending_history.pop(req_id, None)
    if task is not None:
        task.cancel()


HANDLERS: dict[int, Handler] = {
    20: req_historical_data,
    25: cancel_historical_data,
}
