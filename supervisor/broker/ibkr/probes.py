"""The ``doctor``'s probes of a gateway, step by step, as findings (supervisor/broker/findings.py).

    probe_socket   TCP connect to host:port, send the API handshake ("API\\0" + version
                   range), keep the first bytes that come back: nothing listening, something
                   else listening, or the TWS API
    probe_gateway  the bot's own connection (IBKRBroker, one client id only: a 326 is a
                   finding, not a reason to try the next) and on it: managed accounts, one
                   what-if (refused under "Read-Only API"), reqCurrentTime, and per symbol
                   its stock contract, a quote, its option chain and one option quote

Every step goes through the same layers a trading cycle uses, so what passes here is what
the bot will get. Nothing here decides ok or fail; the command's pure functions do.
"""

from __future__ import annotations

import asyncio
import contextlib
import math
import re
import time
from collections.abc import Callable, Sequence
from dataclasses import replace
from datetime import UTC, datetime

from common.config import Settings
from common.messages import OptionChain, OptionContract, Right
from supervisor.broker.base import BrokerError, GatewayUnavailable, NotAGateway
from supervisor.broker.findings import (
    ANSWERED,
    CLIENT_ID_IN_USE,
    CONNECTED,
    FAILED,
    NOT_A_GATEWAY,
    NOT_READY,
    REFUSED,
    UNREACHABLE,
    GatewayFinding,
    SocketFinding,
    SymbolFinding,
)
from supervisor.broker.ibkr import errors
from supervisor.broker.ibkr.broker import IBKRBroker
from supervisor.broker.ibkr.handshake import ANSWER_BYTES, API, PARTIAL, handshake_answer
from supervisor.broker.ibkr.marketdata import DELAYED_AGE_S
from supervisor.broker.ibkr.requests import IBKRRequestError
from supervisor.broker.ibkr.upkeep import ClientIdsInUse

# what ib_insync sends first: the prefix, then the client's range of server versions
HANDSHAKE = b"API\0" + len(b"v100..176").to_bytes(4, "big") + b"v100..176"
CODE = re.compile(r"\berror (\d+):")
ONE_OF_ONE = re.compile(r"^no option of 1 quoted; first: ")
WHAT_IF_LIMIT = 0.05  # a what-if is never placed; any limit price gets its margin answer


async def probe_socket(host: str, port: int, timeout_s: float) -> SocketFinding:
    """Connect, send the handshake, and keep what came back within ``timeout_s``."""
    try:
        reader, writer = await asyncio.wait_for(asyncio.open_connection(host, port), timeout_s)
    except ConnectionRefusedError:
        return SocketFinding(host, port, REFUSED, error="connection refused")
    except (OSError, TimeoutError) as exc:
        error = "no answer" if isinstance(exc, TimeoutError) else str(exc.strerror or exc)
        return SocketFinding(host, port, UNREACHABLE, error=error)
    answer, closed = b"", False
    try:
        writer.write(HANDSHAKE)
        await writer.drain()
        answer, closed = await _first_bytes(reader, timeout_s)
    except OSError as exc:  # reset while we talk: what came so far is the finding
        return answered(host, port, answer, True, str(exc.strerror or exc))
    finally:
        writer.close()
        with contextlib.suppress(OSError):  # the peer reset it first: closed either way
            await writer.wait_closed()
    return answered(host, port, answer, closed)


def answered(host: str, port: int, answer: bytes, closed: bool, error: str = "") -> SocketFinding:
    """The finding for bytes a connect received: what they are, and the server version."""
    kind = handshake_answer(answer)
    version = 0
    if kind == API:
        head = answer[4:].partition(b"\0")[0]
        version = int(head) if head.isdigit() else 0
    return SocketFinding(host, port, ANSWERED, answer, closed, error, kind, version)


async def _first_bytes(reader: asyncio.StreamReader, timeout_s: float) -> tuple[bytes, bool]:
    """The first bytes until they say what answered, the peer closes, or time runs out."""
    answer = b""
    deadline = time.monotonic() + timeout_s
    while len(answer) < ANSWER_BYTES:
        left = deadline - time.monotonic()
        if left <= 0:
            break
        try:
            data = await asyncio.wait_for(reader.read(ANSWER_BYTES - len(answer)), left)
        except TimeoutError:
            break
        if not data:
            return answer, True
        answer += data
        if handshake_answer(answer) != PARTIAL:
            break
    return answer, False


def single_client_id(settings: Settings) -> Settings:
    """The settings with one client id to try: "in use" is what the doctor reports."""
    ibkr = settings.ibkr.model_copy(update={"client_id_attempts": 1})
    return settings.model_copy(update={"ibkr": ibkr})


async def probe_gateway(
    settings: Settings, symbols: Sequence[str], now: Callable[[], float] = time.time
) -> GatewayFinding:
    """Connect as the bot does and ask what the doctor checks; always disconnects."""
    broker = IBKRBroker(single_client_id(settings), now=now)
    client_id = settings.ibkr.client_id
    try:
        await broker.connect()
    except ClientIdsInUse as exc:
        return GatewayFinding(CLIENT_ID_IN_USE, client_id, str(exc))
    except GatewayUnavailable as exc:
        return GatewayFinding(NOT_READY, client_id, str(exc))
    except NotAGateway as exc:
        return GatewayFinding(NOT_A_GATEWAY, client_id, str(exc))
    except BrokerError as exc:
        return GatewayFinding(FAILED, client_id, str(exc))
    try:
        return await _on_connection(broker, client_id, symbols, settings.ibkr.request_timeout_s)
    finally:
        await broker.disconnect()


async def _on_connection(
    broker: IBKRBroker, client_id: int, symbols: Sequence[str], timeout_s: float
) -> GatewayFinding:
    gateway_time, local_time, time_error = await _clock(broker, timeout_s)
    found = []
    for symbol in symbols:
        found.append(await probe_symbol(broker, symbol))
    # a quoted option first; else one whose quote failed (a what-if needs no market data)
    listed = [f for f in found if f.option and "not listed" not in f.option_error]
    option = min(listed, key=lambda f: bool(f.option_error)).option if listed else ""
    tried, what_if_error, what_if_code = "", "", 0
    contract = _parse_key(option)
    if contract is not None:
        tried = f"BUY 1 {option} LMT {WHAT_IF_LIMIT:g}"
        try:
            await broker.what_if(contract, "BUY", 1, WHAT_IF_LIMIT)
        except BrokerError as exc:
            what_if_error, what_if_code = _text(exc), _code(exc)
    return GatewayFinding(
        CONNECTED,
        broker.client_id if broker.client_id is not None else client_id,
        accounts=tuple(broker.managed_accounts()),
        what_if_error=what_if_error,
        what_if_code=what_if_code,
        what_if_tried=tried,
        gateway_time=gateway_time,
        local_time=local_time,
        time_error=time_error,
        symbols=tuple(found),
    )


async def _clock(broker: IBKRBroker, timeout_s: float) -> tuple[float, float, str]:
    """The gateway's time (reqCurrentTime, whole seconds) and ours halfway through the ask."""
    asked = broker.now()
    try:
        answer = await asyncio.wait_for(broker.ib.reqCurrentTimeAsync(), timeout_s)
    except TimeoutError:
        return math.nan, math.nan, f"no answer to reqCurrentTime within {timeout_s:g}s"
    except ConnectionError as exc:
        return math.nan, math.nan, f"connection lost: {exc}"
    local = (asked + broker.now()) / 2
    return float(answer.timestamp()), local, ""


async def probe_symbol(broker: IBKRBroker, symbol: str) -> SymbolFinding:
    """Stock contract, quote, chain, one option quote; each step's failure is a finding."""
    try:
        unknown = await broker.unknown_symbols([symbol])
    except BrokerError as exc:
        return SymbolFinding(symbol, stock_error=str(exc), skipped="no stock contract")
    if symbol in unknown:
        return SymbolFinding(symbol, stock_error=unknown[symbol], skipped="no stock contract")
    quote_error, quote_code, delayed, price = "", 0, False, math.nan
    try:
        quote = await broker.quote(symbol)
        delayed = broker.now() - quote.ts >= DELAYED_AGE_S / 2
        price = _price(quote.bid, quote.ask, quote.last, quote.close)
    except BrokerError as exc:
        quote_error, quote_code = _text(exc), _code(exc)
    head = SymbolFinding(
        symbol, quote_error=quote_error, quote_code=quote_code, delayed=delayed, price=price
    )
    try:
        chain = await broker.chain(symbol)
    except BrokerError as exc:
        return replace(head, chain_error=str(exc), skipped="no option chain")
    head = replace(head, expirations=len(chain.expirations), strikes=len(chain.strikes))
    contract = pick_option(chain, price, broker.now())
    if contract is None:
        return replace(head, chain_error="no expiry from today on", skipped="no option to quote")
    try:
        (oq,) = await broker.option_quotes([contract])
    except BrokerError as exc:
        return replace(head, option=contract.key, option_error=_text(exc), option_code=_code(exc))
    return replace(
        head,
        option=contract.key,
        option_bid=oq.bid,
        option_ask=oq.ask,
        option_delayed=broker.now() - oq.ts >= DELAYED_AGE_S / 2,
    )


def pick_option(chain: OptionChain, price: float, now_ts: float) -> OptionContract | None:
    """The call of the first expiry from today on, at the strike nearest the price (the
    middle strike when there is no price)."""
    today = datetime.fromtimestamp(now_ts, UTC).strftime("%Y%m%d")
    expiries = [e for e in chain.expirations if e >= today]
    if not expiries or not chain.strikes:
        return None
    strikes = chain.strikes
    if math.isfinite(price):
        strike = min(strikes, key=lambda k: (abs(k - price), k))
    else:
        strike = strikes[len(strikes) // 2]
    return OptionContract(
        chain.symbol,
        expiries[0],
        strike,
        Right.CALL,
        multiplier=chain.multiplier,
        trading_class=chain.trading_class,
    )


def _parse_key(key: str) -> OptionContract | None:
    """An OptionContract back from its key ("SPY 20261211 600C"), None for ""."""
    parts = key.split()
    if len(parts) != 3:
        return None
    symbol, expiry, rest = parts
    return OptionContract(symbol, expiry, float(rest[:-1]), Right(rest[-1]))


def _price(*candidates: float) -> float:
    bid, ask = candidates[0], candidates[1]
    if bid > 0 and ask > 0:
        return (bid + ask) / 2
    return next((p for p in candidates[2:] if p > 0), math.nan)


def _code(exc: BrokerError) -> int:
    """The gateway's error code behind a failure (0: none), also through a wrapping one."""
    if isinstance(exc, IBKRRequestError):
        return exc.code
    found = CODE.search(str(exc))
    return int(found.group(1)) if found else 0


def _text(exc: BrokerError) -> str:
    """The failure without the adapter's own hint (the doctor's fix says more) and without
    option_quotes' wrapping of its single contract."""
    text = str(exc)
    code = _code(exc)
    if errors.hint(code):
        text = text.replace(f" ({errors.hint(code)})", "")
    return ONE_OF_ONE.sub("", text)
