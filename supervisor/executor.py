"""The one execution gate: every risk decision passes here, in the configured mode.

Only ``dry_run`` exists so far: it logs (and later journals) every intent with its verdict and
sends nothing. ``whatif`` and ``live`` are refused until they are built, so no setting can
route an order to a path that does not exist.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

from common.messages import OrderIntent
from supervisor.risk import RiskDecision

log = logging.getLogger("supervisor.executor")

BUILT_MODES = ("dry_run",)


class ModeNotAvailable(ValueError):
    """The configured execution mode cannot be used (not built, or its safeguards refuse)."""


@dataclass(frozen=True)
class Execution:
    intent_id: str
    mode: str
    status: str  # "logged" (dry run) | "refused"
    quantity: int


class Executor:
    def __init__(self, mode: str) -> None:
        if mode not in BUILT_MODES:
            raise ModeNotAvailable(
                f"execution.mode {mode!r} is not available yet; only {', '.join(BUILT_MODES)}"
            )
        self.mode = mode

    def execute(self, intent: OrderIntent, decision: RiskDecision) -> Execution:
        fields = {
            "event": "execution", "mode": self.mode, "intent_id": intent.intent_id,
            "symbol": intent.symbol, "contract": intent.contract.key,
            "signal": intent.signal.value, "accepted": decision.accepted,
            "quantity": decision.quantity, "rule": decision.rule, "reason": decision.reason,
            "entry_limit": intent.entry_limit, "take_profit": intent.take_profit,
            "stop_loss": intent.stop_loss, "confidence": round(intent.confidence, 3),
        }
        if not decision.accepted:
            log.info("refused %s %s: %s (%s)", intent.signal.value, intent.contract.key,
                     decision.rule, decision.reason, extra=fields)
            return Execution(intent.intent_id, self.mode, "refused", 0)
        log.info("DRY RUN %s %d x %s @ %.2f tp %.2f sl %.2f", intent.signal.value,
                 decision.quantity, intent.contract.key, intent.entry_limit,
                 intent.take_profit, intent.stop_loss, extra=fields)
        return Execution(intent.intent_id, self.mode, "logged", decision.quantity)
