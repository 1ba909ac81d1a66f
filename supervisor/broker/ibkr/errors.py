"""IBKR error codes sorted by what the broker does about them.

The gateway reports everything through one ``error`` message (code, request id, text):
farm notices, a request that failed, and the connection going away all look alike. The
broker sorts each code into one kind and acts on the kind, never on loose code lists
scattered through the adapter:

- NOTICE      informational (farm connection OK/broken, API client notices): DEBUG log.
- WARNING     the request goes on (ib_insync does not end it), e.g. 10167 delayed data shown.
- SYMBOL      that one request fails (unknown contract, no permission, pacing of
              historical data): it becomes a SymbolDataError naming the code.
- ORDER       an order was rejected or a cancel failed: WARNING log, the caller decides.
- CONNECTION  the link is in trouble (1100/1101/1102, 326, 100, 502/504): WARNING/ERROR log
              and the reconnect logic reacts.
- OTHER       anything else: logged at WARNING with its code so it gets noticed.

A code the settings or the account can cure (354/10168: no subscription, so
``ibkr.market_data_type: delayed``) carries a ``hint`` the request's error text ends with.

Stats keep running totals per code as ``errors.<code>`` (failures) and ``warnings.<code>``
(notices and warnings), the soak report's convention.
"""

from __future__ import annotations

import logging
from enum import Enum


class Kind(Enum):
    NOTICE = "notice"
    WARNING = "warning"
    SYMBOL = "symbol"
    ORDER = "order"
    CONNECTION = "connection"
    OTHER = "other"


# Informational codes outside the 2100-2199 range.
NOTICES = frozenset({1300, 2200})
# ib_insync treats these as warnings: the request they name is not ended by them.
WARNINGS = frozenset({110, 165, 202, 399, 404, 434, 492, 10167})
SYMBOL_ERRORS = frozenset(
    {
        101,  # max number of tickers reached (a pacing bug: the line semaphore should prevent it)
        102,  # duplicate ticker id
        162,  # historical data pacing violation / query returned no data
        200,  # no security definition found (unknown symbol, strike not listed)
        300,  # cannot find EId with ticker id (cancel of a finished snapshot)
        321,  # error validating request (bad duration, bar size, data type ...)
        322,  # duplicate ticker id (gateway variant) / server error validating
        354,  # requested market data is not subscribed
        366,  # no historical data query found for ticker id
        414,  # snapshot requested with generic ticks
        10090,  # part of requested market data is not subscribed
        10168,  # not subscribed, delayed market data not enabled
        10197,  # no market data during competing live session
    }
)
ORDER_ERRORS = frozenset({103, 104, 105, 106, 107, 109, 135, 161, 201, 203, 10147, 10148, 10149})
CONNECTION_ERRORS = frozenset(
    {
        100,  # max rate of messages per second exceeded (the gateway may disconnect)
        326,  # client id already in use
        502,  # could not connect to TWS / gateway
        504,  # not connected
        1100,  # connectivity between the gateway and IBKR lost
        1101,  # connectivity restored, data lost: market data type and subscriptions again
        1102,  # connectivity restored, data maintained
    }
)

LINK_LOST = 1100
LINK_RESTORED_DATA_LOST = 1101
LINK_RESTORED = 1102
CLIENT_ID_IN_USE = 326
RATE_EXCEEDED = 100
DELAYED_DATA_SHOWN = 10167
NO_SUCH_TICKER = 300
NO_SUBSCRIPTION = frozenset({354, 10168})  # no live market-data subscription


def classify(code: int) -> Kind:
    if 2100 <= code < 2200 or code in NOTICES:
        return Kind.NOTICE
    if code in WARNINGS:
        return Kind.WARNING
    if code in CONNECTION_ERRORS:
        return Kind.CONNECTION
    if code in SYMBOL_ERRORS:
        return Kind.SYMBOL
    if code in ORDER_ERRORS:
        return Kind.ORDER
    return Kind.OTHER


def stats_key(code: int) -> str:
    """``warnings.<code>`` for notices and warnings, ``errors.<code>`` for the rest."""
    kind = classify(code)
    prefix = "warnings" if kind in (Kind.NOTICE, Kind.WARNING) else "errors"
    return f"{prefix}.{code}"


def log_level(code: int, *, ours: bool) -> int:
    """How loudly to log a code; ``ours`` = it names a request the broker is waiting on
    (the failure is then reported to the caller as an exception, so DEBUG is enough)."""
    kind = classify(code)
    if kind is Kind.NOTICE:
        return logging.DEBUG
    if kind is Kind.WARNING:
        return logging.DEBUG if ours else logging.INFO
    if kind is Kind.SYMBOL:
        return logging.DEBUG if ours else logging.WARNING
    if kind is Kind.CONNECTION:
        return logging.ERROR if code in (RATE_EXCEEDED, 502) else logging.WARNING
    return logging.WARNING


# What to change when a code is the settings' or the account's doing, appended to the
# request's error text. Without a market-data subscription IBKR answers 354, or 10168
# ("delayed market data is not enabled": live data was asked for), where with the delayed
# data type it would have sent its free delayed data.
NO_SUBSCRIPTION_HINT = (
    "no market-data subscription for it: set `ibkr.market_data_type: "
    "delayed` (or `ibkr.delayed_fallback: true`) to use IBKR's delayed "
    "data, or subscribe to this market in the IBKR account"
)
HINTS = {
    **dict.fromkeys(NO_SUBSCRIPTION, NO_SUBSCRIPTION_HINT),
    10197: "another session of this IBKR login (TWS, mobile, web) holds the market data: "
    "log it out, or give the bot a login of its own",
}


def hint(code: int) -> str:
    """The setting to change for ``code`` ("" when none would help)."""
    return HINTS.get(code, "")


# Error 162 is the historical-data service's one code for different answers; only its text
# tells them apart (IBKR's texts, after "Historical Market Data Service error message:").
HMDS_NO_DATA = "no data"  # "HMDS query returned no data": an answer, the day is empty
HMDS_PACING = "pacing"  # "Historical data request pacing violation": wait and ask again
HMDS_PERMISSION = "permission"  # "No market data permissions for NYSE STK": never, any day
HMDS_OTHER = "other"  # "API historical data query cancelled", "... different IP", ...


def hmds_refusal(message: str) -> str:
    """Which of the HMDS_* answers an error 162's text is."""
    text = message.lower()
    if "no data" in text:
        return HMDS_NO_DATA
    if "pacing violation" in text:
        return HMDS_PACING
    if "permission" in text:
        return HMDS_PERMISSION
    return HMDS_OTHER


def describe(code: int, message: str) -> str:
    """``error 354: Requested market data is not subscribed`` (the text trimmed)."""
    text = " ".join(message.split())
    if len(text) > 200:
        text = text[:197] + "..."
    return f"error {code}: {text}" if text else f"error {code}"
