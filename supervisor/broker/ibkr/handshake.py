"""What answered a connect, and whether waiting can fix a failed one.

    link._connect_once --first ANSWER_BYTES received--> handshake_answer(): nothing | partial
                       --exception, closed by peer?-->  | api | not_api
                                                      connect_error():
        GatewayUnavailable  refused, no answer in connect_timeout_s, closed unanswered,
                            cut off mid-handshake, answered but not ready: ``run`` waits
        NotAGateway         the first bytes are not the TWS API's first message: exit 3
        BrokerError         anything else (a cancelled connect, an unknown error)

The gateway's first message is a 4-byte big-endian length, then "VERSION\\0CONNECTION-TIME\\0"
(a few dozen bytes). A relay in front of a gateway still starting (compose's socat) accepts
and closes without a byte; a gateway not logged in refuses or stays silent; only another
program answers with something else (an HTTP server's reply, a TLS alert, an SSH banner).
"""

from __future__ import annotations

import asyncio

from supervisor.broker.base import BrokerError, GatewayUnavailable, NotAGateway

ANSWER_BYTES = 64  # the first bytes of each connect kept to judge what answered
FIRST_MESSAGE_MAX_BYTES = 4096
NOTHING, PARTIAL, API, NOT_API = "nothing", "partial", "api", "not_api"
PORTS = "IB Gateway paper 4002, live 4001; TWS paper 7497, live 7496"


def handshake_answer(data: bytes) -> str:
    """What the first bytes a connect received are: ``nothing``, the TWS API's first message
    (``api``) or a beginning of one (``partial``: cut off, worth another try), or ``not_api``
    (an HTTP server's reply, a TLS alert, anything else: another program holds the port)."""
    if not data:
        return NOTHING
    if len(data) < 4:  # a length under 64 KiB starts with two zero bytes
        return NOT_API if any(data[:2]) else PARTIAL
    length = int.from_bytes(data[:4], "big")
    if not 0 < length <= FIRST_MESSAGE_MAX_BYTES:
        return NOT_API
    body = data[4 : 4 + length]
    version, sep, _ = body.partition(b"\0")
    if (version and not version.isdigit()) or (sep and not version):
        return NOT_API
    if not sep:
        return PARTIAL if len(body) < length else NOT_API
    return API


def connect_error(
    exc: BaseException, where: str, timeout_s: float, answer: bytes, closed: bool
) -> BrokerError:
    """What a failed connect to ``where`` found, from its exception, its first bytes and
    whether the gateway closed it: GatewayUnavailable when waiting can fix it."""
    kind = handshake_answer(answer)
    if kind == NOT_API:
        return NotAGateway(
            f"{where} does not speak the TWS API (it answered {answer[:24]!r}): "
            f"another program holds the port; fix ibkr.host / ibkr.port ({PORTS})"
        )
    if isinstance(exc, ConnectionRefusedError):
        return GatewayUnavailable(
            f"cannot connect to IB Gateway/TWS at {where}: nothing listening there (connection "
            f"refused); start the gateway with the API enabled or fix ibkr.host / ibkr.port "
            f"({PORTS})"
        )
    if kind == API:
        return GatewayUnavailable(
            f"IB Gateway/TWS at {where} answered the API handshake but "
            + (
                "closed the connection before it was ready"
                if closed
                else f"was not ready within {timeout_s:g}s"
            )
            + " (not logged in yet?)"
        )
    if kind == PARTIAL:
        return GatewayUnavailable(
            f"the connection to {where} ended in the middle of the API handshake"
        )
    if closed:
        return GatewayUnavailable(
            f"{where} closed the connection without answering the API handshake (the gateway "
            "still starting behind a relay, or this host not one of its trusted API clients)"
        )
    if isinstance(exc, TimeoutError):
        return GatewayUnavailable(
            f"IB Gateway/TWS at {where} did not finish the API handshake within {timeout_s:g}s "
            "(not logged in yet, or 127.0.0.1 not a trusted API client?)"
        )
    if isinstance(exc, asyncio.CancelledError):
        return BrokerError(f"connecting to {where} was cancelled")
    if isinstance(exc, OSError):  # reset, unreachable, a name not resolved (yet)
        return GatewayUnavailable(f"cannot connect to {where}: {exc.strerror or exc}")
    return BrokerError(f"connecting to {where} failed: {type(exc).__name__}: {exc}")
