"""Phase 1, the single-symbol check: connect, price, chain, ATM and strike window, warnings.

The original report's Phase 1 as one function over the Broker boundary, so the same check
runs against the stub, the simulated gateway or a real one.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field

from common.calendar import trading_day
from common.config import Settings
from common.messages import Right
from common.quotes import check_underlying
from supervisor.broker.base import Broker, BrokerError
from workers.strikes import ChainError, select_contracts

log = logging.getLogger("supervisor.commands.check")


@dataclass
class CheckReport:
    symbol: str
    broker: str
    ok: bool = False
    price: float | None = None
    price_source: str = ""
    strikes: int = 0
    expirations: int = 0
    expiry: str = ""
    atm: float | None = None
    window: tuple[float, ...] = ()
    option_quotes_usable: int = 0
    warnings: list[str] = field(default_factory=list)
    seconds: float = 0.0

    def lines(self) -> list[str]:
        window = ", ".join(f"{k:g}" for k in self.window)
        price = self.price if self.price is not None else "n/a"
        return [
            f"check {self.symbol} via {self.broker}: {'OK' if self.ok else 'FAILED'} "
            f"in {self.seconds:.2f}s",
            f"  price {price} ({self.price_source or '-'})",
            f"  chain: {self.strikes} strikes, {self.expirations} expirations; "
            f"expiry {self.expiry}",
            f"  ATM {self.atm if self.atm is not None else 'n/a'}; window "
            f"({len(self.window)}): {window}",
            f"  option snapshots with a usable bid and ask: {self.option_quotes_usable}",
            *(f"  warning: {w}" for w in self.warnings),
        ]


async def run_check(broker: Broker, settings: Settings, symbol: str, now_ts: float) -> CheckReport:
    report = CheckReport(symbol, broker.name)
    started = time.monotonic()
    try:
        await broker.connect()
        quote = await broker.quote(symbol)
        check, ref = check_underlying(quote, settings.quotes)
        report.warnings += [f"quote flag {f}" for f in check.flags]
        if ref is None:
            report.warnings.append("no usable price: the symbol would be skipped")
            return report
        report.price, report.price_source = ref
        chain = await broker.chain(symbol)
        report.strikes, report.expirations = len(chain.strikes), len(chain.expirations)
        today = trading_day(now_ts, settings.schedule.timezone)
        selection = select_contracts(chain, report.price, Right.CALL, today, settings.options)
        report.expiry, report.atm, report.window = selection.expiry, selection.atm, selection.window
        quotes = await broker.option_quotes(selection.candidates)
        report.option_quotes_usable = sum(1 for q in quotes if q.bid > 0 and q.ask > 0)
        report.ok = True
    except (BrokerError, ChainError) as exc:
        report.warnings.append(f"{type(exc).__name__}: {exc}")
    finally:
        report.seconds = time.monotonic() - started
        try:
            await broker.disconnect()
        except BrokerError as exc:
            log.warning("disconnect after the check failed: %s", exc)
    return report
