"""The one execution gate: every risk decision passes here, in the configured mode.

    decision --refused--> journal (decision) --> log
             --accepted-> journal (intent, before anything is sent) --> mode:
                 dry_run  journal an order marked "simulated"; the position book plays it
                 whatif   IBKR's what-if margin check, journaled; nothing is sent
                 live     a native bracket (limit entry, take-profit, stop; one OCA group)

Live is possible only when the settings say live AND the command line says --live AND the
connected account equals the configured one (``live_refusal``); anything else refuses.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import asdict, dataclass, replace
from typing import Literal

from common.config import Settings
from common.messages import OrderIntent
from supervisor.broker.base import Broker, BrokerError, EntriesStopped, OrderRejected
from supervisor.journal.order_status import OrderStatus
from supervisor.journal.store import Journal
from supervisor.trading.order_moves import move_keeping_ids
from supervisor.trading.risk import RiskDecision

log = logging.getLogger("supervisor.trading.execution")

ExecutionMode = Literal["dry_run", "whatif", "live"]
MODES: tuple[ExecutionMode, ...] = ("dry_run", "whatif", "live")
Fields = dict[str, object]  # a log record's extra fields


class ModeNotAvailable(ValueError):
    """The configured execution mode cannot be used: the message says which guard refused."""


def live_refusal(
    settings: Settings, cli_live: bool, broker_name: str, accounts: Sequence[str] | None
) -> str | None:
    """Why live trading is not allowed, or None when every guard agrees; each reason names
    the fix for where the refused value came from (the file, a flag, the environment).

    ``accounts`` None: not connected yet, so every refusal the settings and the command line
    alone decide, and the account-against-the-gateway check is left for after the connect
    (called again then, with the accounts the gateway manages)."""
    mode = settings.execution.mode
    origins = settings.origins()
    mode_from = origins.get("execution.mode", "")
    if mode != "live":
        return None if not cli_live else _mode_refusal(mode, mode_from)
    if not cli_live:
        came = f" (from {mode_from})" if mode_from else ""
        return (
            f"execution.mode is live{came} but the command line lacks --live: add --live "
            "to trade live, or set execution.mode to dry_run or whatif"
        )
    if broker_name != "ibkr":
        return (
            f"live trading needs the IBKR broker, not {broker_name!r}: use --broker ibkr "
            "(or broker: ibkr in the settings file)"
        )
    wanted = settings.ibkr.account
    if not wanted:
        return (
            "execution.mode is live but ibkr.account is empty: name the account to trade "
            "in the settings file (ibkr.account)"
        )
    if accounts is not None and wanted not in accounts:
        came = f" (from {origins['ibkr.account']})" if "ibkr.account" in origins else ""
        return (
            f"ibkr.account {wanted!r}{came} is not the connected account "
            f"({', '.join(accounts) or 'none reported'}): log the gateway in to {wanted!r}, "
            "or name the connected account in ibkr.account"
        )
    return None


def _mode_refusal(mode: str, mode_from: str) -> str:
    """--live given while the mode is not live: the fix depends on who set the mode."""
    if mode_from.startswith("--mode"):
        return (
            f"--live given with {mode_from}: drop {mode_from} to trade live (the settings "
            f"file's execution.mode must say live), or drop --live to run {mode}"
        )
    if mode_from:
        variable = mode_from.split(",")[0].lstrip("$")
        return (
            f"--live given but execution.mode is {mode!r} from {mode_from} in the "
            f"environment: set {variable}=live, or drop --live"
        )
    return (
        f"--live given but execution.mode is {mode!r}: set execution.mode: live in the "
        "settings file, or drop --live"
    )


# simulated (dry_run) | checked (whatif) | submitted (live): sent as the mode sends;
# refused: risk, a stop or a duplicate; rejected: the gateway refused it; error: the broker
# failed the call
ExecutionStatus = Literal["simulated", "checked", "submitted", "refused", "rejected", "error"]


@dataclass(frozen=True)
class Execution:
    intent_id: str
    mode: ExecutionMode
    status: ExecutionStatus
    quantity: int
    decision: RiskDecision


def execution_mode(mode: str) -> ExecutionMode:
    """``mode`` as one of MODES; ModeNotAvailable otherwise."""
    for known in MODES:
        if known == mode:
            return known
    raise ModeNotAvailable(f"execution.mode {mode!r} is not one of {MODES}")


class Executor:
    def __init__(self, mode: str, broker: Broker, journal: Journal, account: str = "") -> None:
        self.mode = execution_mode(mode)
        self.broker = broker
        self.journal = journal
        self.account = account

    async def execute(
        self,
        intent: OrderIntent,
        decision: RiskDecision,
        day: str,
        ts: float,
        stopping: bool = False,
    ) -> Execution:
        decision = self._gate(intent, decision, day, stopping)
        self.journal.record_decision(decision, day, ts)
        fields = _fields(intent, decision, self.mode)
        if not decision.accepted:
            log.info(
                "refused %s %s (signal %s): %s (%s)",
                intent.action,
                intent.contract.key,
                intent.signal.value,
                decision.rule,
                decision.reason,
                extra=fields,
            )
            return Execution(intent.intent_id, self.mode, "refused", 0, decision)
        try:
            status = await self._send(intent, decision, ts)
        except OrderRejected as exc:
            return self._rejected(intent, decision, day, ts, exc, fields)
        except EntriesStopped as exc:  # nothing left: the stop came while it waited its turn
            return self._stopped(intent, decision, day, exc, fields)
        except BrokerError as exc:
            return self._failed(intent, decision, ts, exc, fields)
        log.info(
            "%s %s tp %.2f sl %.2f",
            self.mode.upper(),
            describe(intent, decision.quantity),
            intent.take_profit,
            intent.stop_loss,
            extra={**fields, "status": status},
        )
        return Execution(intent.intent_id, self.mode, status, decision.quantity, decision)

    def _gate(
        self, intent: OrderIntent, decision: RiskDecision, day: str, stopping: bool
    ) -> RiskDecision:
        """Risk's decision, refused after all when a stop was asked for, or when the intent
        is journaled already (sent before a restart); an accepted one's intent is journaled
        here, before anything is sent."""
        if decision.accepted and stopping:
            decision = replace(
                decision,
                accepted=False,
                quantity=0,
                rule="stopping",
                reason="a stop was asked for: no new order is sent",
            )
        if decision.accepted and not self.journal.record_intent(intent, day):
            decision = replace(
                decision,
                accepted=False,
                quantity=0,
                rule="duplicate",
                reason="already in the journal (sent before a restart)",
            )
        return decision

    def _stopped(
        self,
        intent: OrderIntent,
        decision: RiskDecision,
        day: str,
        exc: EntriesStopped,
        fields: Fields,
    ) -> Execution:
        stopped = replace(decision, accepted=False, quantity=0, rule="stopping", reason=str(exc))
        self.journal.reject_decision(intent.intent_id, day, stopped.reason, "stopping")
        log.info(
            "refused %s %s: stopping (%s)",
            intent.action,
            intent.contract.key,
            exc,
            extra={**fields, "rule": "stopping"},
        )
        return Execution(intent.intent_id, self.mode, "refused", 0, stopped)

    def _failed(
        self,
        intent: OrderIntent,
        decision: RiskDecision,
        ts: float,
        exc: BrokerError,
        fields: Fields,
    ) -> Execution:
        if self.mode != "live":  # live orders have their row already ("unconfirmed")
            self.journal.orders.record(
                intent.intent_id,
                self.mode,
                OrderStatus.ERROR,
                decision.quantity,
                ts,
                details={"error": str(exc)},
            )
        log.error(
            "%s %s failed: %s",
            self.mode,
            intent.contract.key,
            exc,
            extra={**fields, "event": "execution_error"},
        )
        return Execution(intent.intent_id, self.mode, "error", 0, decision)

    async def _send(
        self, intent: OrderIntent, decision: RiskDecision, ts: float
    ) -> Literal["simulated", "checked", "submitted"]:
        prices = {
            "entry_limit": intent.entry_limit,
            "take_profit": intent.take_profit,
            "stop_loss": intent.stop_loss,
        }
        if self.mode == "dry_run":
            self.journal.orders.record(
                intent.intent_id,
                "dry_run",
                OrderStatus.SIMULATED,
                decision.quantity,
                ts,
                details=prices,
            )
            return "simulated"
        if self.mode == "whatif":
            await self._what_if(intent, decision, ts, prices)
            return "checked"
        await self._place(intent, decision, ts, prices)
        return "submitted"

    async def _what_if(
        self, intent: OrderIntent, decision: RiskDecision, ts: float, prices: dict[str, float]
    ) -> None:
        result = await self.broker.what_if(
            intent.contract, "BUY", decision.quantity, intent.entry_limit
        )
        self.journal.orders.record_whatif(
            intent.intent_id,
            result.init_margin_change,
            result.maint_margin_change,
            result.commission,
            ts,
        )
        self.journal.orders.record(
            intent.intent_id,
            "whatif",
            OrderStatus.CHECKED,
            decision.quantity,
            ts,
            details={**prices, **asdict(result)},
        )

    async def _place(
        self, intent: OrderIntent, decision: RiskDecision, ts: float, prices: dict[str, float]
    ) -> None:
        """Journal, then send: a crash in between leaves a "sending" row whose orderRef the
        start-up reconcile finds at the broker and adopts."""
        row = self.journal.orders.record(
            intent.intent_id, "live", OrderStatus.SENDING, decision.quantity, ts, details=prices
        )
        try:
            placed = await self.broker.place_bracket(intent, decision.quantity, self.account)
        except EntriesStopped as exc:
            self.journal.orders.update(row, OrderStatus.NOT_SENT, ts, details={"error": str(exc)})
            raise
        except OrderRejected as exc:
            self.journal.orders.update(
                row,
                OrderStatus.REJECTED,
                ts,
                details={
                    "error_code": exc.code,
                    "error": str(exc),
                    "order_ids": list(exc.order_ids),
                },
            )
            raise
        except BrokerError as exc:  # its fate is unknown: followed by orderRef from now on
            self.journal.orders.update(
                row, OrderStatus.UNCONFIRMED, ts, details={"error": str(exc)}
            )
            raise
        # IBKR works it now: a row that may not become submitted still gets its ids
        move_keeping_ids(
            self.journal,
            intent.intent_id,
            row,
            OrderStatus.SUBMITTED,
            ts,
            {"order_ids": list(placed.order_ids), "perm_ids": list(placed.perm_ids)},
            placed.order_ids[0],
            placed.perm_ids[0],
        )

    def _rejected(
        self,
        intent: OrderIntent,
        decision: RiskDecision,
        day: str,
        ts: float,
        exc: OrderRejected,
        fields: Fields,
    ) -> Execution:
        """The gateway refused the bracket: the decision says so, with its code."""
        held = (
            " (a part had filled: what was bought is held without its exits; the live "
            "book follows it and the expiry exit closes it)"
            if exc.filled
            else ""
        )
        rejected = replace(
            decision,
            accepted=False,
            quantity=0,
            rule="rejected",
            reason=f"error {exc.code}: {exc}{held}",
        )
        self.journal.reject_decision(intent.intent_id, day, rejected.reason)
        log.error(
            "%s %s rejected by the gateway: %s",
            self.mode.upper(),
            describe(intent, decision.quantity),
            rejected.reason,
            extra={**fields, "event": "order_rejected", "code": exc.code},
        )
        return Execution(intent.intent_id, self.mode, "rejected", 0, rejected)


def describe(intent: OrderIntent, quantity: int) -> str:
    """The order as a trader reads it: ``BUY 10 x QQQ 20261204 606P @ 0.50 (signal SELL,
    confidence 0.04)`` -- the side of the order, not the direction of the signal."""
    return (
        f"{intent.action} {quantity} x {intent.contract.key} @ {intent.entry_limit:.2f} "
        f"(signal {intent.signal.value}, confidence {intent.confidence:.2f})"
    )


def _fields(intent: OrderIntent, decision: RiskDecision, mode: str) -> Fields:
    return {
        "event": "execution",
        "mode": mode,
        "intent_id": intent.intent_id,
        "symbol": intent.symbol,
        "contract": intent.contract.key,
        "action": intent.action,
        "signal": intent.signal.value,
        "accepted": decision.accepted,
        "quantity": decision.quantity,
        "rule": decision.rule,
        "reason": decision.reason,
        "values": dict(decision.values),
        "entry_limit": intent.entry_limit,
        "take_profit": intent.take_profit,
        "stop_loss": intent.stop_loss,
        "confidence": round(intent.confidence, 3),
    }
