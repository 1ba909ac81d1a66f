"""An order row's status, and the changes of status the journal allows.

    dry_run   simulated                      the paper book plays it; never changes
    whatif    checked                        IBKR's what-if; nothing sent; never changes
              error                          (dry_run, whatif) the broker failed the call
    live      sending  -> submitted, rejected, unconfirmed, not_sent; working, done (a
                          crash's row, adopted or resolved at start: live_reconcile.py)
              submitted -> working; submitted, working -> done | cancelled
              unconfirmed -> working | done | not_sent      (the answer was lost)
              rejected, done, cancelled -> working           (IBKR works it after all)
              working, done                 a row recorded from what IBKR works (adopted)
              submitted                     the sale before expiry (live_exits.py)
    shares    submitted -> cancelling -> cancelled | done
              submitted -> done | expired (a DAY order of an earlier day) | error

The check is keyed by the row's mode and status, as this table: a live row never goes to
cancelling, expired or error, a share order's row is never working, and each mode starts only
in its own first statuses (``INITIAL``). A row keeping its status is always allowed (its
details or ids change). What works at the broker outranks the row (live_adopt.py), so a row
that said over or refused may become working again; a row that never left (not_sent, error)
or was only simulated never changes. An illegal change is a bug: ``IllegalTransition`` names
both states, the mode and the row, and nothing is written; where the broker drives the change
it is said once and the row skipped (trading/order_moves.py). The values are the strings the
journal has always stored: old files read as before.
"""

from __future__ import annotations

from collections.abc import Mapping
from enum import StrEnum


class OrderStatus(StrEnum):
    SIMULATED = "simulated"  # dry_run: journaled, played by the paper book
    CHECKED = "checked"  # whatif: IBKR's margin check, nothing sent
    SENDING = "sending"  # live: journaled before it is sent; fate unknown until answered
    SUBMITTED = "submitted"  # IBKR took it (order ids known)
    WORKING = "working"  # IBKR lists it working (Submitted, PreSubmitted, ...)
    UNCONFIRMED = "unconfirmed"  # sent, the answer lost: followed by orderRef
    REJECTED = "rejected"  # the gateway refused it
    NOT_SENT = "not_sent"  # never left: a stop came first, or nothing at IBKR carries it
    CANCELLING = "cancelling"  # shares: a cancel asked, not yet taken
    CANCELLED = "cancelled"  # we cancelled it
    DONE = "done"  # IBKR no longer lists it (filled, or over)
    EXPIRED = "expired"  # shares: a DAY order of an earlier session
    ERROR = "error"  # the broker failed the call: nothing is working


S = OrderStatus
NONE: frozenset[OrderStatus] = frozenset()

# an order row's mode (order_rows.OrderMode) -> the statuses a new row may be written with
INITIAL: Mapping[str, frozenset[OrderStatus]] = {
    "dry_run": frozenset({S.SIMULATED, S.ERROR}),
    "whatif": frozenset({S.CHECKED, S.ERROR}),
    "live": frozenset({S.SENDING, S.SUBMITTED, S.WORKING, S.DONE}),
    "shares": frozenset({S.SUBMITTED}),
}

# mode -> status -> the other statuses it may change to (keeping one's status is always
# allowed; a status a mode does not list changes to nothing)
TRANSITIONS: Mapping[str, Mapping[OrderStatus, frozenset[OrderStatus]]] = {
    "dry_run": {},  # simulated, or error: never changes
    "whatif": {},  # checked, or error: never changes
    "live": {
        S.SENDING: frozenset(
            {S.SUBMITTED, S.REJECTED, S.UNCONFIRMED, S.NOT_SENT, S.WORKING, S.DONE}
        ),
        S.UNCONFIRMED: frozenset({S.WORKING, S.DONE, S.NOT_SENT}),
        S.REJECTED: frozenset({S.WORKING}),  # ib_insync may call refused what IBKR works
        S.SUBMITTED: frozenset({S.WORKING, S.DONE, S.CANCELLED}),
        S.WORKING: frozenset({S.DONE, S.CANCELLED}),
        S.CANCELLED: frozenset({S.WORKING}),  # a cancel that did not take
        S.DONE: frozenset({S.WORKING}),  # listed again at IBKR: revived
    },
    "shares": {
        S.SUBMITTED: frozenset({S.CANCELLING, S.DONE, S.EXPIRED, S.ERROR}),
        S.CANCELLING: frozenset({S.CANCELLED, S.DONE}),
    },
}


class IllegalTransition(ValueError):
    """An order row asked to change to a status its current one does not allow."""


def check_initial(mode: str, status: OrderStatus, what: str) -> None:
    if status not in INITIAL.get(mode, NONE):
        raise IllegalTransition(f"{what}: a new {mode} order row cannot start as {status.value!r}")


def allowed(mode: str, old: OrderStatus) -> frozenset[OrderStatus]:
    """The statuses a ``mode`` row in ``old`` may change to (besides keeping ``old``)."""
    return TRANSITIONS.get(mode, {}).get(old, NONE)


def check_transition(mode: str, old: OrderStatus, new: OrderStatus, what: str) -> None:
    """Raises ``IllegalTransition`` naming both states, the mode and ``what`` (the row)."""
    if new != old and new not in allowed(mode, old):
        raise IllegalTransition(
            f"{what}: status {old.value!r} cannot change to {new.value!r} for a {mode} order "
            f"(allowed: {', '.join(sorted(allowed(mode, old))) or 'none'})"
        )
