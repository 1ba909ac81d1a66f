"""What a probe of a gateway found (``doctor``), as plain values.

supervisor/broker/ibkr/probes.py asks the gateway and fills these in; the ``doctor`` command
turns them into ``ok``/``warn``/``fail`` lines with pure functions (supervisor/commands/
doctor_checks.py), tested with hand-built findings. No library import here, so the command
line loads ib_insync only when a gateway is really probed.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

NAN = math.nan

# SocketFinding.outcome
REFUSED = "refused"  # nothing listening (connection refused)
UNREACHABLE = "unreachable"  # no route, a name not resolved, a connect that timed out
ANSWERED = "answered"  # connected; ``answer`` holds the first bytes it sent back

# GatewayFinding.connect
CONNECTED = "connected"
CLIENT_ID_IN_USE = "client_id_in_use"  # error 326
NOT_READY = "not_ready"  # the handshake answered but the API never became ready
NOT_A_GATEWAY = "not_a_gateway"
FAILED = "failed"


@dataclass(frozen=True)
class SocketFinding:
    """A TCP connect to host:port and the API handshake's first answer."""

    host: str
    port: int
    outcome: str  # REFUSED | UNREACHABLE | ANSWERED
    answer: bytes = b""  # the first bytes after our "API\\0" + version range
    closed: bool = False  # the other side closed the socket
    error: str = ""
    # what the answer is (handshake.py): nothing | partial | api | not_api
    kind: str = "nothing"
    server_version: int = 0  # from an "api" answer


@dataclass(frozen=True)
class SymbolFinding:
    """One symbol: its stock contract, a quote, its option chain and one option quote.
    An ``*_code`` is the gateway's error code (0: none, or not an IBKR error)."""

    symbol: str
    stock_error: str = ""  # "" = the contract was found
    quote_error: str = ""
    quote_code: int = 0
    delayed: bool = False  # the quote is IBKR's delayed data (15 minutes old)
    price: float = NAN
    chain_error: str = ""
    expirations: int = 0
    strikes: int = 0
    option: str = ""  # the option asked for, e.g. "SPY 20261211 600C"
    option_error: str = ""
    option_code: int = 0
    option_bid: float = NAN
    option_ask: float = NAN
    option_delayed: bool = False
    skipped: str = ""  # why the later steps did not run


@dataclass(frozen=True)
class GatewayFinding:
    """A connection as the bot makes it, and what the gateway said on it."""

    connect: str  # CONNECTED | CLIENT_ID_IN_USE | NOT_READY | NOT_A_GATEWAY | FAILED
    client_id: int
    error: str = ""
    accounts: tuple[str, ...] = ()
    what_if_error: str = ""  # "" with what_if_tried: the what-if was answered
    what_if_code: int = 0
    what_if_tried: str = ""  # the order it was asked about ("" = not tried)
    gateway_time: float = NAN  # reqCurrentTime, epoch seconds
    local_time: float = NAN  # our clock when the answer came
    time_error: str = ""
    symbols: tuple[SymbolFinding, ...] = ()
