"""What a failed connect found, and whether waiting can fix it (supervisor/broker/ibkr/
handshake.py, link.py): the first bytes judged by a pure function, then the real IB client
against small loopback servers that refuse, close, stay silent, answer HTTP, or answer the
handshake and no more."""

from __future__ import annotations

import asyncio
import socket
import struct
import time
from collections.abc import Awaitable, Callable

import pytest

from common.config import Settings
from supervisor.broker.base import BrokerError, GatewayUnavailable, NotAGateway
from supervisor.broker.ibkr.broker import IBKRBroker
from supervisor.broker.ibkr.handshake import API, NOT_API, NOTHING, PARTIAL, handshake_answer

FIRST = struct.pack(">I", 25) + b"176\x0020261201 10:30:00 EST\x00"  # IB Gateway's first message


@pytest.mark.parametrize(
    "data, verdict",
    [
        (b"", NOTHING),
        (FIRST, API),
        (FIRST + b"\x00\x00\x00\x0515\x001\x00", API),  # and what follows it
        (FIRST[:2], PARTIAL),
        (FIRST[:4], PARTIAL),
        (FIRST[:6], PARTIAL),  # cut off mid-version: a gateway dying mid-handshake
        (b"HTTP/1.1 400 Bad Request\r\n", NOT_API),
        (b"\x15\x03\x01\x00\x02\x02\x50", NOT_API),  # a TLS alert
        (b"SSH-2.0-OpenSSH_9.6\r\n", NOT_API),
        (b"\x00\x00\x00\x05hello", NOT_API),  # framed, but no version
        (b"\x00\x00\x00\x00", NOT_API),  # an empty first message
        (b"\x00\x00\x00\x03\x00ab", NOT_API),
        (b"\x00\x00\x10\x01" + b"1" * 60, NOT_API),  # longer than any first message
        (b"\x01", NOT_API),
    ],
)
def test_the_first_bytes_say_whether_the_tws_api_answered(data: bytes, verdict: str) -> None:
    assert handshake_answer(data) == verdict


Handler = Callable[[asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]]


async def _close(_r: asyncio.StreamReader, w: asyncio.StreamWriter) -> None:
    w.close()


async def _silent(r: asyncio.StreamReader, w: asyncio.StreamWriter) -> None:
    await r.read()  # until the client gives up and closes
    w.close()


async def _http(r: asyncio.StreamReader, w: asyncio.StreamWriter) -> None:
    await r.read(100)
    w.write(b"HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\nConnection: close\r\n\r\n")
    await w.drain()
    w.close()


async def _handshake_only(r: asyncio.StreamReader, w: asyncio.StreamWriter) -> None:
    await r.read(100)
    w.write(FIRST)  # ... and never the ids and accounts a ready gateway sends next
    await w.drain()
    await r.read()
    w.close()


def connect_to(handler: Handler | None, timeout_s: float) -> tuple[BrokerError, float]:
    """The error a connect to a server running ``handler`` (None: nothing listening) ends
    with, and how long it took."""

    async def main() -> tuple[BrokerError, float]:
        server = None
        if handler is None:
            with socket.socket() as s:
                s.bind(("127.0.0.1", 0))
                port = s.getsockname()[1]
        else:
            server = await asyncio.start_server(handler, "127.0.0.1", 0)
            port = server.sockets[0].getsockname()[1]
        broker = IBKRBroker(
            Settings.model_validate({"ibkr": {"port": port, "connect_timeout_s": timeout_s}})
        )
        started = time.monotonic()
        try:
            await broker.connect()
        except BrokerError as exc:
            return exc, time.monotonic() - started
        finally:
            await broker.disconnect()
            if server is not None:
                server.close()
        raise AssertionError("connected to a server that is no gateway")

    return asyncio.run(main())


LONG_S = 30.0  # a connect timeout the fast cases must not wait out
# the library's own socket events are relied on: CI runs these with ib_async too
integration = pytest.mark.integration


@integration
def test_nothing_listening_is_worth_waiting_for() -> None:
    error, _ = connect_to(None, LONG_S)
    assert isinstance(error, GatewayUnavailable) and "connection refused" in str(error)


@integration
def test_a_close_without_an_answer_is_worth_waiting_for_and_ends_the_attempt_at_once() -> None:
    # a relay in front of a gateway still starting (compose's socat) accepts, then closes
    error, took_s = connect_to(_close, LONG_S)
    assert isinstance(error, GatewayUnavailable)
    assert "closed the connection without answering the API handshake" in str(error)
    assert took_s < LONG_S


@integration
def test_no_answer_within_the_timeout_is_worth_waiting_for() -> None:
    error, _ = connect_to(_silent, 0.5)
    assert isinstance(error, GatewayUnavailable)
    assert "did not finish the API handshake within 0.5s" in str(error)


@integration
def test_an_answered_handshake_but_no_readiness_is_worth_waiting_for() -> None:
    error, _ = connect_to(_handshake_only, 0.5)
    assert isinstance(error, GatewayUnavailable)
    assert "answered the API handshake but was not ready within 0.5s" in str(error)


@integration
def test_a_port_that_answers_something_else_is_not_a_gateway_at_once() -> None:
    error, took_s = connect_to(_http, LONG_S)
    assert isinstance(error, NotAGateway) and not isinstance(error, GatewayUnavailable)
    assert "does not speak the TWS API" in str(error) and "HTTP/1.1 400" in str(error)
    assert took_s < LONG_S
