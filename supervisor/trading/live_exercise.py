"""An option of ours gone at its expiry: exercised into shares, or expired worthless (live).

    settle(gone)  each live position whose option expired and the broker no longer holds:
      close       the underlying's regular-session close on the expiry day
                  (broker.closing_price); until it is known the position waits (said once)
      moved       the account's stock position in the underlying now, less what it was last
                  seen at while every option of ours in it was still held (journal stock_seen;
                  never seen: 0)
      exercised   moved by at least the option's shares in their direction (+100 x contracts
                  for a call, -100 x for a put: OCC exercises by exception what is $0.01 in
                  the money, and IBKR follows) and in the money at that close (within
                  NEAR_MONEY: the bot's close is the last minute bar's, OCC's may differ by
                  cents) -> the option is booked at its intrinsic value, exit reason
                  "exercised", and its shares get a row of their own (live_shares.py), first
      waits       in the money but no shares yet: IBKR delivers after OCC's processing,
                  overnight; until a regular session of a later day has opened
      expired     otherwise: booked at 0, exit reason "expired"
                  both as of the expiry's close, on the expiry's own day
    follow(now)   the baselines (stock_seen), then the shares (live_shares.py)

IBKR sends no execution for an exercise (no execDetails on the API versions the bot speaks:
the option's position goes to 0 and the shares appear, overnight), so the account's positions
tell it, as nautilus_trader's IB adapter does (track_option_exercise_from_position_update)
and as ib_async's users report (issue 93). Several options of one underlying gone at once
share out its move in turn; a call and a put exercised together net out and are not told
apart (both then wait, and expire at 0 once the next session opened: said in the log).
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

from common.calendar import expiry_close, parse_expiry
from common.config import Settings
from common.messages import Right
from supervisor.broker.base import Broker, BrokerError
from supervisor.journal.records import Position
from supervisor.journal.store import Journal
from supervisor.observe.alerts import Alerter
from supervisor.trading.live_shares import ExercisedShares, with_shares
from supervisor.trading.paper import intrinsic
from supervisor.trading.sessions import SessionBook

log = logging.getLogger("supervisor.trading.live_exercise")

__all__ = ["Exercises", "Settled", "verdict", "with_shares"]  # the desk's one import

ITM_MIN = 0.01  # OCC exercises by exception at $0.01 in the money
NEAR_MONEY = 0.05  # how far out of the money by our close an exercise is still believed
Verdict = Literal["exercised", "expired", "wait"]


@dataclass(frozen=True)
class Settled:
    position: Position
    reason: Literal["exercised", "expired"]
    price: float  # per share of the option: intrinsic value, or 0
    ts: float  # the expiry's close
    shares: int = 0  # delivered (exercised): + a call, - a put
    close: float = 0.0  # the underlying's


def exercise_shares(p: Position) -> int:
    """What an exercise of what ``p`` holds delivers: + for a call, - for a put."""
    return (1 if p.contract.right is Right.CALL else -1) * p.held * p.multiplier


def verdict(p: Position, close: float | None, moved: float, later_session: bool) -> Verdict:
    """What became of ``p``'s option, gone at its expiry (see the module docstring)."""
    if close is None:
        return "wait"
    shares = exercise_shares(p)
    sign = 1 if shares > 0 else -1
    value = intrinsic(p.contract, close)
    out_by = (p.contract.strike - close) * sign  # > 0: out of the money by this much
    if shares and moved * sign >= abs(shares) and out_by <= NEAR_MONEY:
        return "exercised"
    if value >= ITM_MIN and not later_session:
        return "wait"
    return "expired"


class Exercises:
    def __init__(
        self,
        broker: Broker,
        journal: Journal,
        sessions: SessionBook,
        settings: Settings,
        alerter: Alerter | None = None,
    ) -> None:
        self.broker = broker
        self.journal = journal
        self.sessions = sessions
        self.shares = ExercisedShares(broker, journal, sessions, settings, alerter)
        self._waiting: set[str] = set()  # said once

    async def settle(self, gone: Sequence[Position], now_ts: float) -> list[Settled]:
        """The verdict on each of ``gone`` (those waiting are left out); an exercise's shares
        are journaled here, before the caller books the option (a crash between is repaired
        by the next step: the row is journaled once)."""
        stock = self.shares.stock()
        base = {p.symbol: self.journal.shares.stock_seen(p.symbol) or 0.0 for p in gone}
        settled = []
        for p in gone:
            close_ts = await self._close_ts(p, now_ts)
            close = await self._closing_price(p)
            moved = stock.get(p.symbol, 0.0) - base[p.symbol]
            said = verdict(p, close, moved, await self._later_session(p, now_ts))
            if said == "wait":
                self._wait(p, close)
                continue
            self._waiting.discard(p.intent_id)
            assert close is not None
            if said == "expired":
                settled.append(Settled(p, "expired", 0.0, close_ts, close=close))
                continue
            shares = exercise_shares(p)
            base[p.symbol] += shares  # the next option of this underlying: what is left
            self.shares.opened(p, shares, close, close_ts, now_ts)
            settled.append(
                Settled(p, "exercised", intrinsic(p.contract, close), close_ts, shares, close)
            )
        return settled

    async def follow(self, open_live: Sequence[Position], now_ts: float) -> None:
        """The account's stock position in each underlying where every option of ours is
        still held (one gone and not settled may be in the next change), then the shares."""
        listed = {
            (b.symbol, b.expiry, b.strike, b.right)
            for b in self.broker.positions()
            if b.sec_type == "OPT" and b.quantity
        }
        symbols: dict[str, bool] = {}
        for p in open_live:
            c = p.contract
            held = (c.symbol, c.expiry, c.strike, c.right.value) in listed
            symbols[p.symbol] = symbols.get(p.symbol, True) and held
        stock = self.shares.stock()
        self.journal.shares.see_stock(
            {s: stock.get(s, 0.0) for s, all_held in symbols.items() if all_held}, now_ts
        )
        await self.shares.step(now_ts)

    async def _close_ts(self, p: Position, now_ts: float) -> float:
        close = await self.sessions.expiry_close(p.symbol, p.contract.expiry, now_ts)
        fallback = expiry_close(p.contract.expiry)
        return close if close is not None else fallback if fallback is not None else now_ts

    async def _closing_price(self, p: Position) -> float | None:
        day = parse_expiry(p.contract.expiry)
        if day is None:
            return None
        try:
            return await self.broker.closing_price(p.symbol, day)
        except BrokerError as exc:
            log.warning("closing price of %s on %s: %s", p.symbol, day, exc)
            return None

    async def _later_session(self, p: Position, now_ts: float) -> bool:
        """A regular session of a day after the expiry has opened: a delivery would be in."""
        day = parse_expiry(p.contract.expiry)
        session = await self.sessions.today(p.symbol, now_ts)
        return (
            day is not None
            and session is not None
            and session.day > day
            and session.open_ts <= now_ts
        )

    def _wait(self, p: Position, close: float | None) -> None:
        if p.intent_id in self._waiting:
            return
        self._waiting.add(p.intent_id)
        why = (
            f"the close of {p.symbol} on its expiry day is not known yet"
            if close is None
            else f"it was in the money ({p.symbol} closed at {close:.2f}) and its shares "
            "have not arrived (IBKR delivers overnight); booked at 0 if none have by the "
            "next session's open"
        )
        log.warning(
            "%s is no longer held after its expiry: %s",
            p.contract.key,
            why,
            extra={"event": "settlement_waiting", "intent_id": p.intent_id},
        )
