"""The simulated account's money: cash, positions' avgCost and realized P&L, the day's figures.

::

    OrderBook._execute (every fill)  --trade()-------->  Ledger  <--expire() / exercise()--
                                                          |         CloseKeeper (closes.py)
       cash      starts at TotalCashValue (else NetLiquidation); a BUY pays price x qty x
                 multiplier + commission, a SELL receives proceeds - commission; an exercise
                 pays (or receives) strike x shares
       positions avgCost and realized P&L with IBKR's semantics (positions.py)
       the day   at the first event or read of a new trading day (hours.trading_day_start)
                 the NetLiquidation and each position's value then are the baseline
                                                          |
                                 figures(ts) -> AccountFigures (frozen): what the account
                                 handlers, the push feeds (feeds.py) and server.stats() show

NetLiquidation = cash + sum(mark x qty x multiplier); marks are the sim's fair values
(``Market.mark``). AvailableFunds moves with cash by the same amount (a simple stand-in for
IBKR's margin arithmetic); the other scenario values stay as given. dailyPnL = NetLiquidation
now - NetLiquidation at the start of the trading day; a position's dailyPnL = its value now -
its value then + today's cash flows on it (so the positions' dailies sum to the account's).

Exercise and assignment follow what IBKR shows at delivery: the option leaves with no realized
P&L and the stock arrives at the strike (IBKR folds the premium into the stock's cost basis a
day or two later, which the sim does not do). Mutated only on the sim's event loop.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

from tools.gateway_sim.instruments import Instrument
from tools.gateway_sim.market import Market
from tools.gateway_sim.positions import Position, apply_trade
from tools.gateway_sim.scenario import Scenario


@dataclass(frozen=True)
class PositionFigures:
    con_id: int
    symbol: str
    sec_type: str
    expiry: str
    strike: float
    right: str
    quantity: float
    avg_cost: float  # per contract/share, multiplier and opening commissions included
    mark: float  # per share/contract unit, before the multiplier
    market_value: float
    unrealized_pnl: float  # (mark x multiplier - avgCost) x quantity
    realized_pnl_today: float
    realized_pnl: float  # since the sim started
    daily_pnl: float


@dataclass(frozen=True)
class AccountFigures:
    ts: float
    cash: float
    net_liquidation: float
    available_funds: float | None  # None: the scenario lists no AvailableFunds
    unrealized_pnl: float
    realized_pnl_today: float
    realized_pnl: float  # since the sim started
    daily_pnl: float
    day_start_ts: float
    positions: tuple[PositionFigures, ...] = ()

    def position(self, con_id: int) -> PositionFigures | None:
        return next((p for p in self.positions if p.con_id == con_id), None)

    def as_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["positions"] = [asdict(p) for p in self.positions]
        return data


@dataclass
class _Day:
    """One position's share of the trading day."""

    value_at_start: float = 0.0
    cash_flow: float = 0.0
    realized: float = 0.0


@dataclass
class Ledger:
    scenario: Scenario
    market: Market
    positions: dict[int, Position]  # the order book's, by conId (shared, not copied)
    cash: float = field(init=False)
    opening_cash: float = field(init=False)
    realized_total: float = 0.0
    day_start_ts: float | None = None  # None until the first event or read
    day_net_liquidation: float = 0.0
    # the most long option contracts held at once per underlying: what a client's position
    # caps must never let past their limit
    peak_long_options: dict[str, float] = field(default_factory=dict)
    _days: dict[int, _Day] = field(default_factory=dict)

    def __post_init__(self) -> None:
        values = self.scenario.account.values
        self.opening_cash = values.get("TotalCashValue", values.get("NetLiquidation", 0.0))
        self.cash = self.opening_cash

    # ---- events -----------------------------------------------------------------------------
    def trade(
        self, inst: Instrument, signed_qty: float, price: float, commission: float, ts: float
    ) -> tuple[Position, float | None]:
        """A fill: cash and the position move; returns the position and the realized P&L of
        the fill (None if it only opened or added)."""
        self.roll(ts)
        pos = self.positions.setdefault(inst.con_id, Position(inst))
        realized = apply_trade(pos, signed_qty, price, commission)
        self._book(inst, -signed_qty * price * inst.multiplier - commission, realized)
        if inst.sec_type == "OPT":
            held = sum(
                p.quantity
                for p in self.positions.values()
                if p.inst.sec_type == "OPT" and p.inst.symbol == inst.symbol and p.quantity > 0
            )
            self.peak_long_options[inst.symbol] = max(
                self.peak_long_options.get(inst.symbol, 0.0), held
            )
        return pos, realized

    def expire(self, inst: Instrument, ts: float) -> Position:
        """An option expiring worthless: closed at 0, realizing -avgCost x qty (long)."""
        self.roll(ts)
        pos = self.positions[inst.con_id]
        self._book(inst, 0.0, apply_trade(pos, -pos.quantity, 0.0))
        return pos

    def exercise(
        self, option: Instrument, stock: Instrument, shares: float, ts: float
    ) -> tuple[Position, Position]:
        """An exercise or assignment: the option leaves at its cost (no realized P&L, no
        cash), ``shares`` (+ delivered, - taken) change hands at the strike."""
        self.roll(ts)
        opt = self.positions[option.con_id]
        opt.quantity, opt.avg_cost = 0.0, 0.0
        pos = self.positions.setdefault(stock.con_id, Position(stock))
        realized = apply_trade(pos, shares, option.strike)
        self._book(stock, -shares * option.strike, realized)
        return opt, pos

    def _book(self, inst: Instrument, cash_flow: float, realized: float | None) -> None:
        self.cash += cash_flow
        day = self._days.setdefault(inst.con_id, _Day())
        day.cash_flow += cash_flow
        if realized is not None:
            day.realized += realized
            self.realized_total += realized

    # ---- the trading day --------------------------------------------------------------------
    def roll(self, ts: float) -> None:
        """Start a new day's baseline if ``ts`` is in a later trading day than the last one
        (idempotent; events arrive in time order, so the state now is the state then)."""
        start = self.market.clock.trading_day_start(ts)
        if self.day_start_ts is not None and start <= self.day_start_ts:
            return
        self.day_start_ts = start
        self._days = {
            con_id: _Day(value_at_start=self._value(p, start))
            for con_id, p in self.positions.items()
            if p.quantity
        }
        self.day_net_liquidation = self.cash + sum(d.value_at_start for d in self._days.values())

    def _value(self, pos: Position, ts: float) -> float:
        return self.market.mark(pos.inst, ts) * pos.quantity * pos.inst.multiplier

    # ---- figures ----------------------------------------------------------------------------
    def figures(self, ts: float) -> AccountFigures:
        """Everything the account shows at sim time ``ts``."""
        self.roll(ts)
        rows = tuple(self._position_figures(p, ts) for p in self.positions.values())
        value = sum(p.market_value for p in rows)
        net = self.cash + value
        funds = self.scenario.account.values.get("AvailableFunds")
        return AccountFigures(
            ts=ts,
            cash=self.cash,
            net_liquidation=net,
            available_funds=None if funds is None else funds + self.cash - self.opening_cash,
            unrealized_pnl=sum(p.unrealized_pnl for p in rows),
            realized_pnl_today=sum(d.realized for d in self._days.values()),
            realized_pnl=self.realized_total,
            daily_pnl=net - self.day_net_liquidation,
            day_start_ts=self.day_start_ts or ts,
            positions=rows,
        )

    def _position_figures(self, pos: Position, ts: float) -> PositionFigures:
        inst = pos.inst
        mark = self.market.mark(inst, ts) if pos.quantity else 0.0
        value = mark * pos.quantity * inst.multiplier
        day = self._days.get(inst.con_id, _Day())
        return PositionFigures(
            con_id=inst.con_id,
            symbol=inst.symbol,
            sec_type=inst.sec_type,
            expiry=inst.expiry,
            strike=inst.strike,
            right=inst.right,
            quantity=pos.quantity,
            avg_cost=pos.avg_cost,
            mark=mark,
            market_value=value,
            unrealized_pnl=value - pos.avg_cost * pos.quantity,
            realized_pnl_today=day.realized,
            realized_pnl=pos.realized_pnl,
            daily_pnl=value - day.value_at_start + day.cash_flow,
        )
