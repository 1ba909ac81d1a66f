"""Refusals alerted as a trader wants them: the first of a rule at once, then a count.

    risk.evaluate refused an intent (rule R)  --> the first of R in alerts.refusal_every_min:
                                                  alerted at once ("refused"), with the rule's
                                                  reason; the next ones only counted
    IBKR refused a live bracket               --> alerted at once, each ("order_rejected"),
                                                  never counted away: another symbol's, or one
                                                  after a part filled (held without its exits)
                                                  is a trader's matter now
    whatif: IBKR refused a bracket            --> windowed as a rule, as "order_rejected"
    each cycle's start (``tick``)             --> a window over with some held back: one
                                                  alert "N more refused by R in the last M min"

A rule that refuses every intent of every cycle (a cap reached, a wide market) is one alert an
hour, not one per intent. Not alerted at all: ``paused`` (the trader asked for it),
``kill_switch``, ``daily_loss_limit`` and ``journal_lost`` (each alerted once by its own
alert); the end-of-day summary counts every refusal by
rule (runtime/day_end.py). ``alerts.refusal_every_min: 0`` alerts none but IBKR's live
rejections.
"""

from __future__ import annotations

from common.messages import OrderIntent
from supervisor.observe.alerts import Alerter, mode_label
from supervisor.observe.repeats import PerWindow
from supervisor.trading.execution import Execution, Executor

# asked for (the trader's pause), or alerted once already by their own alert (the kill switch
# and the daily loss that trips it, a journal lost)
QUIET_RULES = ("paused", "kill_switch", "daily_loss_limit", "journal_lost")
REJECTED = "order_rejected"  # IBKR's refusal of a bracket: its own key and alert kind


def refusal_alerts_for(
    alerter: Alerter | None, every_min: float, executor: Executor
) -> RefusalAlerts:
    """The desk's refusal alerts, labelled with the execution gate's mode (the gate is the one
    part that knows it: the desk never reads it, tests/test_desk_book.py)."""
    return RefusalAlerts(alerter, every_min, executor.mode)


class RefusalAlerts:
    def __init__(self, alerter: Alerter | None, every_min: float, mode: str) -> None:
        self.alerter = alerter
        self.every_min = every_min
        self.mode = mode_label(mode)
        self.window = PerWindow(every_min * 60.0) if every_min > 0 else None

    def after(self, intent: OrderIntent, done: Execution, now_ts: float) -> None:
        """An execution's refusal (risk's or IBKR's) alerted, or counted."""
        if done.status == "rejected":
            key, kind = REJECTED, REJECTED
            what = f"IBKR refused the {intent.action} bracket"
        elif done.status == "refused" and done.decision.rule not in QUIET_RULES:
            key, kind = done.decision.rule, "refused"
            what = f"refused {intent.action}"
        else:
            return
        text = (
            f"{self.mode} {what} for {intent.contract.key} ({intent.intent_id}): "
            f"{done.decision.rule}: {done.decision.reason}"
        )
        if self.alerter is not None and done.status == "rejected" and done.mode == "live":
            # each its own alert: a later one may be another contract's, or leave something
            # held without its exits (a part filled), which a count an hour later would hide
            self.alerter.send(kind, text, {"rule": key})
            return
        if self.alerter is None or self.window is None:
            return
        held = self.window.note(key, now_ts)
        if held is None:
            return  # counted: said at the window's end
        if held:
            text += f"; {held} more by {key} in the {self.every_min:g} min before"
        text += f" (more by {key} are counted for {self.every_min:g} min, then said)"
        self.alerter.send(kind, text, {"rule": key})

    def tick(self, now_ts: float) -> None:
        """The windows that ended with refusals held back: one alert each."""
        if self.alerter is None or self.window is None:
            return
        for key, held in self.window.due(now_ts).items():
            self.alerter.send(
                REJECTED if key == REJECTED else "refused",
                f"{self.mode}: {held} more intent(s) refused by {key} in the last "
                f"{self.every_min:g} min (the first was alerted)",
                {"rule": key, "count": held},
            )
