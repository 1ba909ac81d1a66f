"""What the journal stores, as the frozen records the rest of the bot passes around.

Position is one bracket, of the simulated (paper) book or followed live from the broker's
fills; the paper rules live in ``supervisor/trading/paper.py``, the live ones in
``supervisor/trading/live_fills.py``; the journal only keeps the state. A risk decision is journaled
from anything shaped like one (``DecisionRecord``), so the journal knows no trading code.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal, Protocol

from common.messages import OptionContract

# short: contracts of ours the account holds short because a bracket's exits sold more than
# was bought (the bot never sells to open); its row is "<intent id>:short"
Status = Literal["pending", "open", "closed", "expired", "short"]
# expiry: closed at the bid before the expiry's close; expired: settled at intrinsic value
# (live: worthless, the broker no longer holds it); exercised: live, the account got its
# shares at the expiry's close, booked at intrinsic value (the shares: journal/shares.py)
ExitReason = Literal[
    "take_profit", "stop_loss", "expiry", "expired", "exercised", "cancelled", "closed", "flatten"
]

STATUSES: tuple[Status, ...] = ("pending", "open", "closed", "expired", "short")
EXIT_REASONS: tuple[ExitReason, ...] = (
    "take_profit",
    "stop_loss",
    "expiry",
    "expired",
    "exercised",
    "cancelled",
    "closed",
    "flatten",
)  # closed: sold otherwise; flatten: the trader's flatten (trading/controls.py)
ACTIVE: tuple[Status, ...] = ("pending", "open", "short")


def _finite(x: float | None) -> bool:
    return x is not None and math.isfinite(x)


@dataclass(frozen=True)
class Position:
    """One bracket: the entry order while ``pending``, the holding while ``open``.

    Live positions also count what was sold so far (``exited``, at the average
    ``exit_price``): a take-profit may fill in parts. Paper positions exit whole (None)."""

    intent_id: str
    symbol: str
    contract: OptionContract
    quantity: int  # contracts, > 0 (we only buy to open)
    entry_limit: float
    take_profit: float
    stop_loss: float
    status: Status
    opened_ts: float  # when the entry order was placed (epoch seconds)
    entry_price: float | None = None
    filled_ts: float | None = None
    mark: float | None = None  # last usable mid (or last trade) while open
    exit_price: float | None = None
    closed_ts: float | None = None
    exit_reason: ExitReason | None = None
    commission: float = 0.0  # paid on the fills so far (live); realized P&L is net of it
    exited: int | None = None  # live: contracts sold so far
    exit_commission: float = 0.0  # live: the part of ``commission`` paid on the sales

    @property
    def multiplier(self) -> int:
        return self.contract.multiplier

    @property
    def active(self) -> bool:
        return self.status in ACTIVE

    @property
    def held(self) -> int:
        """Contracts held now."""
        if self.status != "open":
            return 0
        return self.quantity - (self.exited or 0)

    @property
    def unrealized_pnl(self) -> float:
        """(mark - entry) x held x multiplier while open; 0 when anything is missing."""
        if self.status != "open" or not (_finite(self.entry_price) and _finite(self.mark)):
            return 0.0
        assert self.entry_price is not None and self.mark is not None
        return (self.mark - self.entry_price) * self.held * self.multiplier

    @property
    def realized_pnl(self) -> float:
        """(exit - entry) x quantity x multiplier - commissions once closed; 0 for a
        never-filled entry. Live, as IBKR counts it: what was sold so far, less the sales'
        commissions and the entry's commission pro rata (IBKR folds it into avgCost)."""
        if not (_finite(self.entry_price) and _finite(self.exit_price)):
            return 0.0
        assert self.entry_price is not None and self.exit_price is not None
        if self.exited is not None:
            if not self.quantity:
                return 0.0
            entry_commission = self.commission - self.exit_commission
            gross = (self.exit_price - self.entry_price) * self.exited * self.multiplier
            return gross - self.exit_commission - entry_commission * self.exited / self.quantity
        if self.active:
            return 0.0
        gross = (self.exit_price - self.entry_price) * self.quantity * self.multiplier
        return gross - self.commission


@dataclass(frozen=True)
class DayState:
    """What must survive a restart within a trading day: start equity and the kill switch."""

    day: str
    start_equity: float
    halted: bool = False
    halted_reason: str = ""
    halted_ts: float | None = None


class DecisionRecord(Protocol):
    """A risk decision as the journal stores it (supervisor.trading.risk.RiskDecision)."""

    @property
    def intent_id(self) -> str: ...
    @property
    def accepted(self) -> bool: ...
    @property
    def quantity(self) -> int: ...
    @property
    def rule(self) -> str: ...
    @property
    def reason(self) -> str: ...
    @property
    def values(self) -> Sequence[tuple[str, float | str]]: ...
